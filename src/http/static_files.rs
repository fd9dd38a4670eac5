//! The shopper's static pages (`public/`), served with browser caching.
//!
//! The directory is read into memory once at start-up (it is small), each file with its content
//! type, an `ETag` (SHA-1 of the bytes) and, for text, a gzip copy. A request is looked up in that
//! table only, so nothing outside `public/` can be reached; paths with `..` are refused outright.
//! HTML is `no-cache` (always revalidated, answered `304` from its ETag); assets asked for with a
//! version query (`app.js?v=3`) are cached for a year, others for five minutes.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use sha1::{Digest, Sha1};

use crate::error::AppError;

/// A response (the same type as `respond::Resp`, named here so that `AppState`, which holds the
/// pages, does not reach the request helpers that take `AppState` back).
type Resp = Response<super::body::Body>;

/// One file, ready to send.
#[derive(Debug)]
pub struct Asset {
    content_type: &'static str,
    etag: HeaderValue,
    body: Bytes,
    gzip: Option<Bytes>,
    /// One of the operators' console's files: served on the admin listener only.
    console: bool,
}

/// Every file of the public directory, by URL path (`/index.html`).
#[derive(Debug, Default)]
pub struct Assets {
    files: HashMap<String, Asset>,
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

impl Assets {
    /// Reads `dir` recursively; a missing directory gives an empty table.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut assets = Self::default();
        if dir.is_dir() {
            assets.walk(dir, dir)?;
        } else {
            tracing::warn!(dir = %dir.display(), "no public directory; static pages are off");
        }
        Ok(assets)
    }

    fn walk(&mut self, root: &Path, dir: &Path) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                self.walk(root, &path)?;
                continue;
            }
            let body = std::fs::read(&path)?;
            let content_type = content_type(&path);
            let etag = format!("\"{}\"", &hex::encode(Sha1::digest(&body))[..20]);
            let compressible = content_type.starts_with("text/")
                || content_type.starts_with("application/json")
                || content_type.starts_with("image/svg");
            let gzip = (compressible && body.len() > 256).then(|| {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                enc.write_all(&body).expect("gzip to a Vec");
                Bytes::from(enc.finish().expect("gzip to a Vec"))
            });
            let rel = path
                .strip_prefix(root)?
                .to_string_lossy()
                .replace('\\', "/");
            self.files.insert(
                format!("/{rel}"),
                Asset {
                    content_type,
                    etag: HeaderValue::from_str(&etag)?,
                    body: Bytes::from(body),
                    gzip,
                    console: is_console(&rel),
                },
            );
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn find(&self, path: &str) -> Option<&Asset> {
        let path = if path.ends_with('/') {
            format!("{path}index.html")
        } else {
            path.to_string()
        };
        self.files
            .get(&path)
            .or_else(|| self.files.get(&format!("{path}.html")))
    }
}

/// The operators' console (`public/admin.html`, its script and style): served on the admin
/// listener only, beside the admin API it calls. Marked on the file when the directory is read,
/// and checked on the file a request found, so `/%61dmin.html` or `/js/admin%2ejs` find the
/// same file and the same refusal.
fn is_console(rel: &str) -> bool {
    matches!(rel, "admin.html" | "js/admin.js" | "css/admin.css")
}

/// The policy every page is served with: scripts, styles and connections only from this origin
/// (the pages have no inline script), images also from https (a sale's `imageUrl`), never
/// framed (the buy and pay pages cannot be clickjacked), no plugins, no `<base>`, forms only
/// here.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: https:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'; object-src 'none'";

/// Serves a file of `public/`; `admin` when the request came to the admin listener (the only
/// one that serves the console).
pub async fn serve<B>(req: Request<B>, assets: &Assets, admin: bool) -> Result<Resp, AppError> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(AppError::MethodNotAllowed {
            allow: "GET, HEAD".into(),
        });
    }
    let raw = req.uri().path();
    let decoded =
        percent_decode(raw).ok_or_else(|| AppError::BadParam("bad path encoding".into()))?;
    if decoded.split(['/', '\\']).any(|seg| seg == "..") || decoded.contains('\0') {
        return Err(AppError::BadParam(
            "path leaves the public directory".into(),
        ));
    }
    let asset = assets
        .find(&decoded)
        .filter(|a| admin || !a.console)
        .ok_or(AppError::NotFound)?;

    let cache = if asset.content_type.starts_with("text/html") {
        "no-cache"
    } else if req.uri().query().is_some_and(|q| q.contains("v=")) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let gzip_ok = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));

    let (status, body, gzipped) = match (&asset.gzip, matches) {
        (_, true) => (StatusCode::NOT_MODIFIED, Bytes::new(), false),
        (Some(gz), false) if gzip_ok => (StatusCode::OK, gz.clone(), true),
        _ => (StatusCode::OK, asset.body.clone(), false),
    };
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    let mut resp = Response::new(super::body::Body::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::ETAG, asset.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if status == StatusCode::OK {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        if gzipped {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    if asset.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    Ok(resp)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded_so_dot_dot_cannot_hide() {
        assert_eq!(percent_decode("/%2e%2e/etc").as_deref(), Some("/../etc"));
        assert_eq!(percent_decode("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(percent_decode("/%zz"), None);
    }
}
