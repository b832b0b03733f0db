//! The `frostnode` command line: parse arguments, dispatch, print a one-line reason on failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use frostnode::config::Config;
use frostnode::localnet::{self, ClusterLayout, LocalCluster};
use frostnode::node::{BoundNode, KeygenRequest};
use frostnode::wire::NodeId;

#[derive(Parser)]
#[command(
    name = "frostnode",
    version,
    about = "Threshold Ed25519 (FROST) signing node with distributed key generation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node daemon.
    Run {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Create the node identity in a data directory and print its PeerId.
    Init {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Write identities and configs for a cluster of N nodes.
    ClusterConfig {
        /// Number of nodes.
        #[arg(long)]
        nodes: u16,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Address the nodes listen on and dial.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Node k uses libp2p port BASE+k and API port BASE+1000+k.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
        /// Write configs for the docker-compose cluster instead.
        #[arg(long)]
        docker: bool,
    },
    /// Ask a node to run a DKG for a new key.
    Keygen {
        /// Node API URL.
        #[arg(long, default_value = "http://127.0.0.1:8001")]
        api: String,
        /// Name of the key.
        #[arg(long)]
        key_id: String,
        /// Signing threshold (default floor(2n/3)+1).
        #[arg(long)]
        threshold: Option<u16>,
        /// Participant ids, comma separated (default: every node).
        #[arg(long, value_delimiter = ',')]
        participants: Option<Vec<NodeId>>,
    },
    /// Show a node's status.
    Status {
        /// Node API URL.
        #[arg(long, default_value = "http://127.0.0.1:8001")]
        api: String,
    },
    /// Check an Ed25519 signature offline.
    Verify {
        /// Group public key, hex (32 bytes).
        #[arg(long)]
        public_key: String,
        /// Message, hex.
        #[arg(long)]
        message: String,
        /// Signature, hex (64 bytes).
        #[arg(long)]
        signature: String,
    },
    /// Benchmarks on an in-process cluster.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Time distributed key generations.
    Dkg {
        /// Number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: u16,
        /// Threshold (default floor(2n/3)+1).
        #[arg(long)]
        threshold: Option<u16>,
        /// Number of DKGs to time.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn dispatch(command: Command) -> Result<(), String> {
    match command {
        Command::Run { config, log_format } => {
            init_logging(log_format, "info");
            run(config).await
        }
        Command::Init { data_dir } => {
            let (key, created) =
                frostnode::identity::load_or_create(&data_dir).map_err(|e| e.to_string())?;
            if !created {
                eprintln!("identity already exists; keeping it");
            }
            println!("{}", key.public().to_peer_id());
            Ok(())
        }
        Command::ClusterConfig {
            nodes,
            out,
            host,
            base_port,
            docker,
        } => {
            let layout = ClusterLayout {
                nodes,
                host,
                base_port,
                docker,
            };
            let peers = localnet::write_cluster_config(&layout, &out)?;
            for (i, p) in peers.iter().enumerate() {
                println!(
                    "node{}: {p}  ({})",
                    i + 1,
                    out.join(format!("node{}.toml", i + 1)).display()
                );
            }
            Ok(())
        }
        Command::Keygen {
            api,
            key_id,
            threshold,
            participants,
        } => {
            let body =
                json!({ "key_id": key_id, "threshold": threshold, "participants": participants });
            let v = http(reqwest::Method::POST, &api, "/v1/keys", Some(body)).await?;
            print_json(&v);
            Ok(())
        }
        Command::Status { api } => {
            let v = http(reqwest::Method::GET, &api, "/v1/status", None).await?;
            print_json(&v);
            Ok(())
        }
        Command::Verify {
            public_key,
            message,
            signature,
        } => verify(&public_key, &message, &signature).map(|()| println!("valid")),
        Command::Bench { what } => {
            init_logging(LogFormat::Text, "warn");
            match what {
                BenchCommand::Dkg {
                    nodes,
                    threshold,
                    runs,
                } => bench_dkg(nodes, threshold, runs).await,
            }
        }
    }
}

async fn run(path: PathBuf) -> Result<(), String> {
    let config = Config::load(&path).map_err(|e| e.to_string())?;
    let keypair = frostnode::identity::load(&config.data_dir).map_err(|e| e.to_string())?;
    let node = BoundNode::bind(config, keypair)
        .await
        .map_err(|e| e.to_string())?
        .start();
    shutdown_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn http(
    method: reqwest::Method,
    api: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let mut req = client
        .request(method, &url)
        .timeout(Duration::from_secs(120));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = resp.status();
    let v: Value = resp
        .json()
        .await
        .map_err(|e| format!("{url} answered {status} with a body that is not JSON: {e}"))?;
    if status.is_success() {
        Ok(v)
    } else {
        let msg = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        Err(format!("{status}: {msg}"))
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn decode_hex<const N: usize>(what: &str, s: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(s.trim()).map_err(|e| format!("{what} is not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{what} must be {N} bytes, got {}", b.len()))
}

fn verify(public_key: &str, message: &str, signature: &str) -> Result<(), String> {
    let pk = decode_hex::<32>("public key", public_key)?;
    let sig = decode_hex::<64>("signature", signature)?;
    let msg = hex::decode(message.trim()).map_err(|e| format!("message is not hex: {e}"))?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .map_err(|_| "public key is not a valid Ed25519 point".to_string())?;
    vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| "signature is NOT valid for this key and message".to_string())
}

fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => eprintln!("warning: cannot raise the open-file limit: {e}"),
    }
}

async fn bench_dkg(nodes: u16, threshold: Option<u16>, runs: usize) -> Result<(), String> {
    if nodes < 2 || runs == 0 {
        return Err("need --nodes >= 2 and --runs >= 1".into());
    }
    raise_fd_limit();
    let dir = std::env::temp_dir().join(format!("frostnode-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    let cluster = LocalCluster::start_with(nodes, &dir, |c| {
        c.dkg_timeout = Duration::from_secs(120);
        c.request_timeout = Duration::from_secs(60);
    })
    .await
    .map_err(|e| e.to_string())?;
    cluster
        .wait_connected(Duration::from_secs(120))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{nodes} nodes connected in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let h = cluster.handle(1);
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let t0 = Instant::now();
        let r = h
            .keygen(KeygenRequest {
                key_id: format!("bench-{i}"),
                threshold,
                participants: None,
            })
            .await
            .map_err(|e| format!("DKG {i} failed: {e}"))?;
        let dt = t0.elapsed();
        times.push(dt);
        println!(
            "run {:>3}: {:>9.2} ms  (t={}, group key {}…)",
            i + 1,
            dt.as_secs_f64() * 1e3,
            r.threshold,
            &r.group_public_key[..16]
        );
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "dkg n={nodes}: median {:.2} ms, min {:.2} ms, max {:.2} ms over {runs} runs",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
