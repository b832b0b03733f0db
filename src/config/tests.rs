//! Config parsing and validation: defaults, field-named errors, clients.
use super::*;

fn base() -> String {
    let a = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    let b = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    format!(
        r#"
id = 1
listen = "/ip4/127.0.0.1/tcp/7001"
data_dir = "data/node1"

[[peers]]
id = 2
peer_id = "{a}"
addr = "/ip4/127.0.0.1/tcp/7002"

[[peers]]
id = 3
peer_id = "{b}"
addr = "/dns4/node3/tcp/7000"
"#
    )
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: "test.toml".into(),
        message: e.to_string(),
    })?;
    Config::from_raw(raw)
}

fn field_of(r: Result<Config, ConfigError>) -> String {
    match r {
        Err(ConfigError::Field { field, .. }) => field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn valid_config_parses_with_defaults() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.id, 1);
    assert_eq!(c.all_ids(), vec![1, 2, 3]);
    assert_eq!(c.api_listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    assert_eq!(c.dkg_timeout, Duration::from_millis(DEFAULT_DKG_TIMEOUT_MS));
}

#[test]
fn errors_name_the_field() {
    let t = base();
    assert_eq!(field_of(parse(&t.replace("id = 1\n", "id = 0\n"))), "id");
    assert_eq!(
        field_of(parse(&t.replace("id = 3", "id = 2"))),
        "peers[1].id"
    );
    assert_eq!(
        field_of(parse(&t.replace("id = 2", "id = 1"))),
        "peers[0].id"
    );
    assert_eq!(
        field_of(parse(&t.replace("id = 1\n", "id = 70000\n"))),
        "id"
    );
    assert_eq!(
        field_of(parse(&t.replace("/ip4/127.0.0.1/tcp/7002", "not-an-addr"))),
        "peers[0].addr"
    );
    assert_eq!(
        field_of(parse(&t.replace("\"/ip4/127.0.0.1/tcp/7001\"", "\"x\""))),
        "listen"
    );
    let bad_pid = t.replacen("peer_id = \"", "peer_id = \"zz", 1);
    assert_eq!(field_of(parse(&bad_pid)), "peers[0].peer_id");
}

#[test]
fn clients_parse_and_errors_name_the_field() {
    let pk = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[5; 32])
            .verifying_key()
            .to_bytes(),
    );
    let client = |name: &str, key: &str, allow: &str, limit: &str| {
        format!(
            "{}\n[[clients]]\nname = \"{name}\"\npublic_key = \"{key}\"\nallow = {allow}\n{limit}",
            base()
        )
    };
    let c = parse(&client(
        "payments-app",
        &pk,
        r#"["sign:payments", "keygen:*"]"#,
        "max_per_minute = 600",
    ))
    .unwrap();
    assert_eq!(c.clients.len(), 1);
    assert_eq!(c.clients[0].max_per_minute, Some(600));
    assert!(c.clients[0].allow[1].allows(crate::auth::Action::Keygen, "k"));
    assert_eq!(
        field_of(parse(&client("a b", &pk, r#"["*"]"#, ""))),
        "clients[0].name"
    );
    assert_eq!(
        field_of(parse(&client("a", "00", r#"["*"]"#, ""))),
        "clients[0].public_key"
    );
    assert_eq!(
        field_of(parse(&client("a", &pk, r#"["fly:*"]"#, ""))),
        "clients[0].allow"
    );
    assert_eq!(
        field_of(parse(&client("a", &pk, "[]", ""))),
        "clients[0].allow"
    );
    assert_eq!(
        field_of(parse(&client("a", &pk, r#"["*"]"#, "max_per_minute = 0"))),
        "clients[0].max_per_minute"
    );
}

#[test]
fn unknown_fields_and_bad_toml_are_parse_errors() {
    assert!(matches!(
        parse("id = 1\nbogus = 2\n"),
        Err(ConfigError::Parse { .. })
    ));
    assert!(matches!(parse("id = = 1"), Err(ConfigError::Parse { .. })));
}

#[test]
fn policy_and_read_token_parse_and_errors_name_the_field() {
    let c = parse(&format!(
        "{}\n[policy]\ncommand = \"/usr/local/bin/approve\"\nargs = [\"--strict\"]\n",
        base()
    ))
    .unwrap();
    let p = c.policy.unwrap();
    assert_eq!(p.program, PathBuf::from("/usr/local/bin/approve"));
    assert_eq!(p.args, vec!["--strict".to_string()]);
    assert_eq!(p.timeout, Duration::from_millis(2000));
    assert!(parse(&base()).unwrap().policy.is_none());
    // The policy must answer before a coordinator gives up on this node (sign_ms / 3).
    let slow = format!(
        "{}\n[policy]\ncommand = \"/x\"\ntimeout_ms = 2700\n",
        base()
    );
    assert_eq!(field_of(parse(&slow)), "policy.timeout_ms");
    let longer = slow.replace(
        "[policy]",
        "[timeouts]\nsign_ms = 9600\nrequest_ms = 13000\n\n[policy]",
    );
    assert_eq!(
        parse(&longer).unwrap().policy.unwrap().timeout,
        Duration::from_millis(2700)
    );
    // The coordinator's own verdict comes before the signature, within the forwarder's wait.
    let short_requests = longer.replace("request_ms = 13000", "request_ms = 12000");
    assert_eq!(field_of(parse(&short_requests)), "policy.timeout_ms");
    let empty = format!("{}\n[policy]\ncommand = \"\"\n", base());
    assert_eq!(field_of(parse(&empty)), "policy.command");

    let with_token = |t: &str| format!("{}\n[api]\nread_token = \"{t}\"\n", base());
    assert_eq!(
        parse(&with_token("0123456789abcdef0123"))
            .unwrap()
            .api_read_token
            .as_deref(),
        Some("0123456789abcdef0123")
    );
    assert_eq!(field_of(parse(&with_token("short"))), "api.read_token");
    assert_eq!(
        field_of(parse(&with_token("with spaces in it, long enough"))),
        "api.read_token"
    );
}

#[test]
fn the_passphrase_is_taken_out_of_the_environment_and_files_must_be_private() {
    let var = "FROSTNODE_CONFIG_TEST_PASSPHRASE";
    std::env::set_var(var, "secret words");
    let mut c = parse(&format!(
        "{}\n[keystore]\npassphrase_env = \"{var}\"\n",
        base()
    ))
    .unwrap();
    c.take_passphrase().unwrap();
    assert!(std::env::var(var).is_err(), "the variable is gone");
    assert_eq!(
        c.read_passphrase().unwrap().unwrap().as_slice(),
        b"secret words"
    );
    assert!(
        !format!("{c:?}").contains("secret words"),
        "Debug redacts it"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        std::fs::write(&file, "from a file\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut c = parse(&base()).unwrap();
        c.passphrase = PassphraseSource::File(file.clone());
        match c.read_passphrase() {
            Err(ConfigError::Field { field, message }) => {
                assert_eq!(field, "keystore.passphrase_file");
                assert!(message.contains("chmod 600"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            c.read_passphrase().unwrap().unwrap().as_slice(),
            b"from a file"
        );
    }
}

#[test]
fn gossip_settings_default_parse_and_errors_name_the_field() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.gossip, crate::net::GossipSettings::default());
    let text = format!(
        "{}\n[gossip]\nqueue_len = 20000\npublish_timeout_ms = 60000\n",
        base()
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.gossip.queue_len, 20_000);
    assert_eq!(c.gossip.publish_timeout, Duration::from_secs(60));
    assert_eq!(
        c.gossip.forward_timeout,
        crate::net::GossipSettings::default().forward_timeout
    );
    for (line, field) in [
        ("queue_len = 0", "gossip.queue_len"),
        ("publish_timeout_ms = 5", "gossip.publish_timeout_ms"),
        ("forward_timeout_ms = 3600000", "gossip.forward_timeout_ms"),
    ] {
        let text = format!("{}\n[gossip]\n{line}\n", base());
        assert_eq!(field_of(parse(&text)), field, "{line}");
    }
}
