mod common;
use common::*;

#[tokio::test]
async fn forwards_to_a_backend() {
    let b = Backend::start("b1").await;
    let sw = Seawall::start(&format!(
        r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = {{ forward = "app" }}

[[target_groups]]
name = "app"
targets = ["{}"]
"#,
        b.addr
    ));
    let got = get(sw.addr("web"), false, "example.test", "/hello?x=1").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["id"], "b1");
    assert_eq!(got.json()["path"], "/hello?x=1");
    assert_eq!(got.seen_header("host").as_deref(), Some("example.test"));
}
