//! The live ticker page and the browser client served by `ringcast serve` (docs/config.md `--no-page`,
//! client/README.md), over real sockets: `GET /` is the page, `GET /ringcast.js` the module with an ETag
//! that answers `If-None-Match` with 304, `--no-page` gives 404, and the upgrade on `/` works either way.

mod common;

use std::io::Write;

use common::*;

/// `GET path` with extra header lines → (status, head, body).
fn get(server: &Server, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = server.connect();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").unwrap();
    let resp = read_to_close(&mut s);
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    (status_of(&resp), head, resp[end + 4..].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn assert_upgrades(server: &Server) {
    let mut ws = server.ws();
    subscribe(&mut ws, r#"{"op":"subscribe","symbols":["EFERT"]}"#);
}

#[test]
fn the_page_and_the_client_module_are_served_and_the_upgrade_still_works() {
    let server = Server::start(&["--workers", "1"]);
    let (status, head, body) = get(&server, "/", "");
    assert_eq!(status, 200, "{head}");
    assert!(
        header(&head, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(r#"import { connect, parseSymbols } from "/ringcast.js""#));
    assert_eq!(
        header(&head, "content-length").unwrap(),
        html.len().to_string()
    );

    let (status, head, body) = get(&server, "/ringcast.js", "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type").unwrap(),
        "text/javascript; charset=utf-8"
    );
    assert!(header(&head, "cache-control").unwrap().contains("max-age"));
    assert_eq!(
        body,
        include_bytes!("../client/ringcast.js"),
        "the embedded module is client/ringcast.js"
    );
    let etag = header(&head, "etag").expect("an ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let (status, head, body) = get(
        &server,
        "/ringcast.js",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(status, 304, "{head}");
    assert!(body.is_empty());
    assert_eq!(header(&head, "etag"), Some(etag.as_str()));
    let (status, _, _) = get(&server, "/ringcast.js", "If-None-Match: \"older\"\r\n");
    assert_eq!(status, 200);

    // The SharedWorker of the shared mode: served the same way.
    let (status, head, body) = get(&server, "/ringcast-worker.js", "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "content-type").unwrap(),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(body, include_bytes!("../client/ringcast-worker.js"));
    let worker_etag = header(&head, "etag").expect("an ETag").to_string();
    assert_ne!(worker_etag, etag);
    let (status, _, body) = get(
        &server,
        "/ringcast-worker.js",
        &format!("If-None-Match: {worker_etag}\r\n"),
    );
    assert_eq!(status, 304);
    assert!(body.is_empty());

    assert_upgrades(&server);
}

#[test]
fn no_page_gives_404_and_the_upgrade_still_works() {
    let server = Server::start(&["--workers", "1", "--no-page"]);
    for path in ["/", "/ringcast.js", "/ringcast-worker.js"] {
        let (status, head, _) = get(&server, path, "");
        assert_eq!(status, 404, "{path}: {head}");
    }
    assert_upgrades(&server);
    let env_server = Server::start_with_env(&["--workers", "1"], &[("RINGCAST_NO_PAGE", "true")]);
    assert_eq!(get(&env_server, "/", "").0, 404);
}
