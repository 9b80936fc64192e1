//! The upstream handshake: the server key and configured org/project, none of the client's
//! credentials, beta markers or subprotocols.

use fake_upstream::Script;

use crate::common::*;

/// The upstream gets the server key and none of the client's credentials, beta markers or
/// subprotocols; without org/project configured, no such headers either.
#[actix_web::test]
async fn upstream_handshake_carries_only_the_server_credentials() {
    let h = start(Script::echo(), &[]).await;
    let (_, mut ws) = connect_with(
        &format!("{}/v1/realtime?model=gpt-realtime", h.base),
        &[
            "realtime",
            "openai-insecure-api-key.sk-client-secret",
            "openai-beta.realtime-v1",
        ],
        &[
            ("Authorization", "Bearer sk-client-own"),
            ("api-key", "sk-client-azure"),
            ("OpenAI-Beta", "realtime=v1"),
            ("OpenAI-Organization", "org-client"),
            ("OpenAI-Project", "proj_client"),
        ],
    )
    .await
    .expect("upgrade succeeds");
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    let shakes = h.fake.recorder().wait_handshakes(1, T).await.expect("dial");
    let hs = &shakes[0];

    let auth: Vec<_> = hs
        .headers
        .iter()
        .filter(|(n, _)| n == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(auth, vec![format!("Bearer {TEST_KEY}").as_str()]);
    for absent in [
        "openai-beta",
        "api-key",
        "openai-organization",
        "openai-project",
    ] {
        assert_eq!(hs.header(absent), None, "{absent} reached the upstream");
    }
    for (name, value) in &hs.headers {
        assert!(
            !value.contains("sk-client") && !value.contains("realtime=v1"),
            "client credential forwarded in {name}: {value}"
        );
    }
    assert!(
        hs.protocols_offered
            .iter()
            .all(|p| !p.starts_with("openai-insecure-api-key.") && !p.starts_with("openai-beta.")),
        "client subprotocols forwarded: {:?}",
        hs.protocols_offered
    );
    h.stop().await;
}

/// With OPENAI_ORGANIZATION and OPENAI_PROJECT set, the upstream gets exactly those values.
#[actix_web::test]
async fn upstream_handshake_carries_configured_org_and_project() {
    let h = start(
        Script::echo(),
        &[
            ("OPENAI_ORGANIZATION", "org-server"),
            ("OPENAI_PROJECT", "proj_server"),
        ],
    )
    .await;
    let (_, mut ws) = connect_with(
        &format!("{}/v1/realtime", h.base),
        &["realtime"],
        &[
            ("OpenAI-Organization", "org-client"),
            ("OpenAI-Project", "proj_client"),
        ],
    )
    .await
    .expect("upgrade succeeds");
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    let shakes = h.fake.recorder().wait_handshakes(1, T).await.expect("dial");
    let values = |name: &str| -> Vec<String> {
        shakes[0]
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(values("openai-organization"), vec!["org-server"]);
    assert_eq!(values("openai-project"), vec!["proj_server"]);
    assert_eq!(
        shakes[0].header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    assert_eq!(shakes[0].header("openai-beta"), None);
    h.stop().await;
}
