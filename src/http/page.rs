//! The live ticker page (`GET /`), the browser client (`GET /ringcast.js`) and the SharedWorker that lets
//! all tabs of one origin share one socket (`GET /ringcast-worker.js`), embedded in the binary:
//! no build step, no CDN. `--no-page` turns both off (404); the WebSocket upgrade on `/` is unaffected.
//! Each asset carries a strong ETag (a hash of its bytes, computed at compile time): a request whose
//! `If-None-Match` names it gets `304 Not Modified` without the body.

use crate::protocol::response::Head;

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub body: &'static str,
    pub content_type: &'static str,
    pub cache_control: &'static str,
    etag: u64,
}

const INDEX_HTML: &str = include_str!("../../client/index.html");
const CLIENT_JS: &str = include_str!("../../client/ringcast.js");
const WORKER_JS: &str = include_str!("../../client/ringcast-worker.js");

/// The page: revalidated on every load, so a new server's page is picked up at once.
pub const INDEX: Asset = Asset {
    body: INDEX_HTML,
    content_type: "text/html; charset=utf-8",
    cache_control: "no-cache",
    etag: fnv1a(INDEX_HTML.as_bytes()),
};

/// The client module: cached for five minutes, then revalidated with its ETag.
pub const CLIENT: Asset = Asset {
    body: CLIENT_JS,
    content_type: "text/javascript; charset=utf-8",
    cache_control: "public, max-age=300",
    etag: fnv1a(CLIENT_JS.as_bytes()),
};

/// The SharedWorker module (imports `/ringcast.js`): cached like the client.
pub const WORKER: Asset = Asset {
    body: WORKER_JS,
    content_type: "text/javascript; charset=utf-8",
    cache_control: "public, max-age=300",
    etag: fnv1a(WORKER_JS.as_bytes()),
};

/// The answer to a plain `GET` of a page path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Asset(Asset),
    NotModified(Asset),
    /// The page is off (`--no-page`).
    NotFound,
}

/// The asset served at `path`, if any.
pub fn asset_at(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(INDEX),
        "/ringcast.js" => Some(CLIENT),
        "/ringcast-worker.js" => Some(WORKER),
        _ => None,
    }
}

/// What to answer for `asset`, given whether the page is on and the request's `If-None-Match`.
pub fn respond(asset: Asset, enabled: bool, if_none_match: Option<&[u8]>) -> Response {
    if !enabled {
        return Response::NotFound;
    }
    let tag = asset.etag();
    let matches = if_none_match.is_some_and(|v| {
        v.split(|&b| b == b',').any(|t| {
            let t = t.trim_ascii();
            let t = t.strip_prefix(b"W/").unwrap_or(t);
            t == b"*" || t == tag.as_bytes()
        })
    });
    if matches {
        Response::NotModified(asset)
    } else {
        Response::Asset(asset)
    }
}

impl Asset {
    /// The quoted ETag, e.g. `"9f3a…"`.
    pub fn etag(&self) -> String {
        format!("\"{:016x}\"", self.etag)
    }
}

impl Response {
    /// Append the HTTP response (`Connection: close`).
    pub fn write(&self, out: &mut Vec<u8>) {
        let (status, asset, body) = match self {
            Response::Asset(a) => (200, Some(a), a.body.as_bytes()),
            Response::NotModified(a) => (304, Some(a), &b""[..]),
            Response::NotFound => (404, None, &b"not found\n"[..]),
        };
        let head = Head::new(status, out).close();
        let head = match asset {
            Some(a) => head
                .header("Content-Type", a.content_type)
                .header("Cache-Control", a.cache_control)
                .header("ETag", a.etag())
                .header("X-Content-Type-Options", "nosniff"),
            None => head.header("Content-Type", "text/plain"),
        };
        if matches!(self, Response::NotModified(_)) {
            head.end();
        } else {
            head.body(body);
        }
    }
}

/// FNV-1a, 64-bit: enough to tell two versions of an asset apart; `const` so it runs at compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: Response) -> String {
        let mut out = Vec::new();
        r.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn paths() {
        assert_eq!(asset_at("/"), Some(INDEX));
        assert_eq!(asset_at("/index.html"), Some(INDEX));
        assert_eq!(asset_at("/ringcast.js"), Some(CLIENT));
        assert_eq!(asset_at("/ringcast-worker.js"), Some(WORKER));
        assert_eq!(asset_at("/other.js"), None);
        assert_ne!(INDEX.etag(), CLIENT.etag());
        assert_ne!(WORKER.etag(), CLIENT.etag());
    }

    #[test]
    fn etag_and_304() {
        let tag = CLIENT.etag();
        assert_eq!(respond(CLIENT, true, None), Response::Asset(CLIENT));
        assert_eq!(
            respond(CLIENT, true, Some(tag.as_bytes())),
            Response::NotModified(CLIENT)
        );
        let list = format!("\"x\", W/{tag}");
        assert_eq!(
            respond(CLIENT, true, Some(list.as_bytes())),
            Response::NotModified(CLIENT)
        );
        assert_eq!(
            respond(CLIENT, true, Some(b"\"stale\"")),
            Response::Asset(CLIENT)
        );
        assert_eq!(
            respond(CLIENT, false, Some(tag.as_bytes())),
            Response::NotFound
        );
    }

    #[test]
    fn responses() {
        let ok = text(Response::Asset(CLIENT));
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(ok.contains("Content-Type: text/javascript; charset=utf-8\r\n"));
        assert!(ok.contains(&format!("Content-Length: {}\r\n", CLIENT.body.len())));
        assert!(ok.ends_with(CLIENT.body));
        let not_modified = text(Response::NotModified(INDEX));
        assert!(not_modified.starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert!(not_modified.contains(&format!("ETag: {}\r\n", INDEX.etag())));
        assert!(not_modified.ends_with("\r\n\r\n"));
        let worker = text(Response::Asset(WORKER));
        assert!(worker.contains("Content-Type: text/javascript; charset=utf-8\r\n"));
        assert!(worker.contains(&format!("ETag: {}\r\n", WORKER.etag())));
        assert!(worker.ends_with(WORKER.body));
        assert_eq!(
            respond(WORKER, true, Some(WORKER.etag().as_bytes())),
            Response::NotModified(WORKER)
        );
        assert!(text(Response::NotFound).starts_with("HTTP/1.1 404 Not Found\r\n"));
    }
}
