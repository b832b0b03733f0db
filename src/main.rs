//! The `frostnode` command line: parse arguments, dispatch, print a one-line reason on failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde_json::{json, Value};

use frostnode::cli::{BenchCommand, Cli, Command, KeysCommand, LogFormat, NodeOfKey};
use frostnode::client::{
    http, load_client_key, make_token, post_authorized, verify_hex, write_client_key, TokenFor,
};
use frostnode::config::Config;
use frostnode::daemon::BoundNode;
use frostnode::localnet::{self, ClusterLayout, LocalnetOptions};

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // The node's config is read, and its passphrase taken out of the environment, while this
    // is the only thread.
    if let Command::Run {
        config, prepared, ..
    } = &mut cli.command
    {
        match prepare_run(config) {
            Ok(c) => *prepared = Some(Box::new(c)),
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
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
    // Colours only on a terminal: files, journald and container logs get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn dispatch(command: Command) -> Result<(), String> {
    match command {
        Command::Run {
            log_format,
            seal_plaintext_keys,
            prepared,
            ..
        } => {
            init_logging(log_format, "info");
            let config = prepared.ok_or("the config was not read")?;
            run(*config, seal_plaintext_keys).await
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
            println!(
                "client key: {} (client {:?}, allowed everything on every node)",
                out.join(localnet::CLIENT_KEY_FILE).display(),
                localnet::ADMIN_CLIENT
            );
            if docker {
                println!(
                    "identities are readable by their group only: start compose with FROSTNODE_GID=$(id -g)"
                );
                if !localnet::owned_by_root(
                    &out.join("node1").join(frostnode::identity::IDENTITY_FILE),
                ) {
                    println!(
                        "a node reads a group-readable identity only from a file owned by root: \
                         sudo chown root {}/node*/identity.key",
                        out.display()
                    );
                }
            }
            Ok(())
        }
        Command::Keygen {
            api,
            key_id,
            threshold,
            participants,
            client_key,
            client,
        } => {
            let token = token_for(
                client_key,
                client,
                TokenFor::Keygen {
                    key_id: key_id.clone(),
                    threshold,
                    participants: participants.clone(),
                },
            )?;
            let body =
                json!({ "key_id": key_id, "threshold": threshold, "participants": participants });
            let v = http(
                reqwest::Method::POST,
                &api,
                "/v1/keys",
                Some(body),
                Some(&token),
            )
            .await?;
            print_json(&v);
            Ok(())
        }
        Command::Refresh {
            api,
            key_id,
            participants,
            client_key,
            client,
        } => {
            let what = TokenFor::Refresh {
                key_id: key_id.clone(),
                participants: participants.clone(),
            };
            let path = format!("/v1/keys/{key_id}/refresh");
            let body = json!({ "participants": participants });
            let client = (client_key.as_path(), client.as_str());
            print_json(&post_authorized(&api, &path, body, client, what).await?);
            Ok(())
        }
        Command::Reshare {
            api,
            key_id,
            threshold,
            participants,
            client_key,
            client,
        } => {
            let what = TokenFor::Reshare {
                key_id: key_id.clone(),
                threshold,
                participants: participants.clone(),
            };
            let path = format!("/v1/keys/{key_id}/reshare");
            let body = json!({ "threshold": threshold, "participants": participants });
            let client = (client_key.as_path(), client.as_str());
            print_json(&post_authorized(&api, &path, body, client, what).await?);
            Ok(())
        }
        Command::Repair(args) => repair(args, false).await,
        Command::Reload { api } => {
            let v = http(reqwest::Method::POST, &api, "/v1/reload", None, None).await?;
            print_json(&v);
            Ok(())
        }
        Command::Enrol(args) => repair(args, true).await,
        Command::Sign {
            api,
            key_id,
            message,
            message_file,
            batch_file,
            client_key,
            client,
        } => {
            if let Some(file) = batch_file {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let lines: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
                let messages = frostnode::api::decode_batch(&lines).map_err(|e| {
                    format!(
                        "{}: {e} (messages count from 0, blank lines skipped)",
                        file.display()
                    )
                })?;
                let what = TokenFor::Sign {
                    key_id: key_id.clone(),
                    messages,
                };
                let token = token_for(client_key, client, what)?;
                let path = format!("/v1/keys/{key_id}/sign");
                let body = json!({ "messages": lines });
                let v = http(reqwest::Method::POST, &api, &path, Some(body), Some(&token)).await?;
                print_json(&v);
                return Ok(());
            }
            let hex_message = match (message, message_file) {
                (Some(m), _) => m,
                (None, Some(f)) => hex::encode(
                    std::fs::read(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?,
                ),
                (None, None) => return Err("give --message or --message-file".into()),
            };
            let message =
                hex::decode(hex_message.trim()).map_err(|e| format!("message is not hex: {e}"))?;
            let what = TokenFor::Sign {
                key_id: key_id.clone(),
                messages: vec![message],
            };
            let token = token_for(client_key, client, what)?;
            let path = format!("/v1/keys/{key_id}/sign");
            let body = json!({ "message": hex_message.trim() });
            let v = http(reqwest::Method::POST, &api, &path, Some(body), Some(&token)).await?;
            print_json(&v);
            Ok(())
        }
        Command::ClientKey { out } => {
            let public_key = write_client_key(&out)?;
            eprintln!("client key written to {}", out.display());
            println!("{public_key}");
            Ok(())
        }
        Command::Token {
            client_key,
            client,
            act,
            key_id,
            message,
            threshold,
            participants,
            node,
            ttl,
        } => {
            let key = load_client_key(&client_key)?;
            let what = match act.as_str() {
                "sign" => TokenFor::Sign {
                    key_id,
                    messages: vec![hex::decode(
                        message.ok_or("--act sign needs --message")?.trim(),
                    )
                    .map_err(|e| format!("message is not hex: {e}"))?],
                },
                "keygen" => TokenFor::Keygen {
                    key_id,
                    threshold,
                    participants,
                },
                "refresh" => TokenFor::Refresh {
                    key_id,
                    participants,
                },
                "reshare" => TokenFor::Reshare {
                    key_id,
                    threshold: threshold.ok_or("--act reshare needs --threshold")?,
                    participants: participants.ok_or("--act reshare needs --participants")?,
                },
                act @ ("repair" | "enrol") => TokenFor::Repair {
                    key_id,
                    node: node.ok_or("--act repair and enrol need --node")?,
                    enrol: act == "enrol",
                },
                other => {
                    return Err(format!(
                    "--act must be sign, keygen, refresh, reshare, repair or enrol, not {other:?}"
                ))
                }
            };
            println!("{}", make_token(&key, &client, what, ttl)?);
            Ok(())
        }
        Command::Localnet {
            nodes,
            threshold,
            data_dir,
            api_base_port,
            exit,
        } => {
            init_logging(LogFormat::Text, "warn");
            localnet::demo(LocalnetOptions {
                nodes,
                threshold,
                data_dir,
                api_base_port,
                exit,
            })
            .await
        }
        Command::Health { api } => {
            let v = http(reqwest::Method::GET, &api, "/v1/health", None, None).await?;
            match v.get("status").and_then(Value::as_str) {
                Some("ok") => {
                    println!("ok");
                    Ok(())
                }
                _ => Err(format!("unhealthy: {v}")),
            }
        }
        Command::Status { api } => {
            let v = http(reqwest::Method::GET, &api, "/v1/status", None, None).await?;
            print_json(&v);
            Ok(())
        }
        Command::Verify {
            public_key,
            message,
            signature,
        } => verify_hex(&public_key, &message, &signature).map(|()| println!("valid")),
        Command::Keys {
            what: KeysCommand::Forget { key_id, config },
        } => {
            let config = Config::load(&config).map_err(|e| e.to_string())?;
            let passphrase = config.read_passphrase().map_err(|e| e.to_string())?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let done = frostnode::keystore::KeyStore::forget(
                &config.data_dir,
                passphrase.as_ref().map(|p| p.as_slice()),
                &key_id,
                now,
            )
            .map_err(|e| e.to_string())?;
            if !done.file_deleted && !done.was_listed {
                return Err(format!(
                    "node {} holds no key {key_id:?}: nothing to forget",
                    config.id
                ));
            }
            println!(
                "key {key_id:?} forgotten on node {}{}; once the node runs again, repair it from another participant: frostnode repair --api URL --key-id {key_id} --node {}",
                config.id,
                done.epoch.map(|e| format!(" (epoch {e} recorded as lost)")).unwrap_or_default(),
                config.id
            );
            Ok(())
        }
        Command::Bench { what } => {
            init_logging(LogFormat::Text, "warn");
            match what {
                BenchCommand::Dkg {
                    nodes,
                    threshold,
                    runs,
                    rtt_ms,
                } => {
                    let rtt = std::time::Duration::from_millis(rtt_ms);
                    frostnode::bench::dkg(nodes, threshold, runs, rtt).await
                }
                BenchCommand::Refresh {
                    nodes,
                    threshold,
                    runs,
                } => frostnode::bench::refresh(nodes, threshold, runs).await,
                BenchCommand::Reshare { from, to, runs } => {
                    let (from, to) = (
                        frostnode::bench::parse_shape(&from)?,
                        frostnode::bench::parse_shape(&to)?,
                    );
                    frostnode::bench::reshare(from, to, runs).await
                }
                BenchCommand::Repair {
                    nodes,
                    threshold,
                    runs,
                } => frostnode::bench::repair(nodes, threshold, runs).await,
                BenchCommand::Sign {
                    nodes,
                    threshold,
                    requests,
                    concurrency,
                    presign,
                    rtt_ms,
                    batch,
                } => {
                    let presign = presign == "on";
                    let rtt = std::time::Duration::from_millis(rtt_ms);
                    frostnode::bench::sign(
                        nodes,
                        threshold,
                        requests,
                        concurrency,
                        presign,
                        rtt,
                        batch,
                    )
                    .await
                }
            }
        }
    }
}

fn prepare_run(path: &std::path::Path) -> Result<Config, String> {
    let mut config = Config::load(path).map_err(|e| e.to_string())?;
    config.take_passphrase().map_err(|e| e.to_string())?;
    Ok(config)
}

async fn run(mut config: Config, seal_plaintext_keys: bool) -> Result<(), String> {
    use frostnode::identity::{load_file_sealed, Sealing};
    config.seal_plaintext_keys = seal_plaintext_keys;
    let passphrase = config.read_passphrase().map_err(|e| e.to_string())?;
    let identity = config.identity_path();
    let (keypair, sealing) = load_file_sealed(&identity, passphrase.as_ref().map(|p| p.as_slice()))
        .map_err(|e| e.to_string())?;
    drop(passphrase);
    let shown = identity.display();
    match sealing {
        Sealing::Sealed => tracing::info!(file = %shown, "identity sealed at rest"),
        Sealing::SealedNow => {
            tracing::info!(file = %shown, "identity was stored in clear; sealed it with the key store passphrase")
        }
        Sealing::Clear => {
            tracing::warn!(file = %shown, "IDENTITY KEY IS STORED UNENCRYPTED: set [keystore] passphrase_env or passphrase_file")
        }
        Sealing::CannotSeal(reason) => tracing::warn!(
            file = %shown,
            %reason,
            "identity is in clear and cannot be rewritten sealed (read-only?); seal it where it is written"
        ),
    }
    let node = BoundNode::bind(config, keypair)
        .await
        .map_err(|e| e.to_string())?
        .start();
    reload_on_hangup(node.handle());
    shutdown_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// Reloads the node's peers and clients from its config file on every `SIGHUP`.
fn reload_on_hangup(node: frostnode::node::NodeHandle) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: reload with `frostnode reload` instead");
            return;
        };
        while hangups.recv().await.is_some() {
            if let Err(e) = node.reload(None).await {
                tracing::warn!(error = %e, "SIGHUP: configuration not reloaded");
            }
        }
    });
    #[cfg(not(unix))]
    let _ = node;
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

/// `frostnode repair` and `frostnode enrol`.
async fn repair(args: NodeOfKey, enrol: bool) -> Result<(), String> {
    let what = TokenFor::Repair {
        key_id: args.key_id.clone(),
        node: args.node,
        enrol,
    };
    let action = if enrol { "enrol" } else { "repair" };
    let path = format!("/v1/keys/{}/{action}", args.key_id);
    let body = json!({ "node": args.node });
    let client = (args.client_key.as_path(), args.client.as_str());
    print_json(&post_authorized(&args.api, &path, body, client, what).await?);
    Ok(())
}

/// A fresh token for one request, from the client key in `client_key`.
fn token_for(client_key: PathBuf, client: String, what: TokenFor) -> Result<String, String> {
    let key = load_client_key(&client_key)?;
    make_token(&key, &client, what, 120)
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}
