//! nginx in front of a test's edges, rendered from `deploy/nginx/` exactly as `scripts/multi`
//! renders it; stopped (and its temp directory removed) on drop.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

pub struct Nginx {
    pub address: String,
    child: Child,
    prefix: PathBuf,
}

impl Nginx {
    /// nginx on a free port, proxying to `edges` (`127.0.0.1:PORT` each).
    pub async fn start(edges: &[String]) -> Nginx {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let prefix =
            std::env::temp_dir().join(format!("fg-nginx-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        std::fs::create_dir_all(prefix.join("tmp")).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let upstreams: String = edges.iter().map(|e| format!("server {e}; ")).collect();
        let conf = std::fs::read_to_string(root.join("deploy/nginx/flashgate.conf.template"))
            .unwrap()
            .replace("${NGINX_PORT}", &format!("127.0.0.1:{port}"))
            .replace("${UPSTREAM_SERVERS}", &upstreams)
            .replace("${PUBLIC_ROOT}", root.join("public").to_str().unwrap());
        std::fs::write(prefix.join("flashgate.conf"), conf).unwrap();
        std::fs::copy(
            root.join("deploy/nginx/local-main.conf"),
            prefix.join("nginx.conf"),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .arg("-g")
            .arg("daemon off;")
            .spawn()
            .expect("nginx (apt-get install nginx-light)");
        let address = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Nginx {
            address,
            child,
            prefix,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would leave them running)
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}
