//! Debian's nginx as the load balancer in front of several replicas: round robin, so that
//! consecutive requests of one push land on different replicas, bodies streamed both ways (no
//! buffering), as [docs/scale-out.md](../../../../docs/scale-out.md) configures it. It runs in the
//! foreground without a master process and is killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx.
pub struct Nginx {
    child: Child,
    /// `127.0.0.1:<port>`
    pub address: String,
}

impl Nginx {
    /// Starts nginx on a free loopback port, balancing over `upstreams` (`host:port` each), with
    /// its files in `dir`.
    pub fn start(dir: &Path, upstreams: &[&str]) -> Nginx {
        assert!(
            Path::new("/usr/sbin/nginx").exists(),
            "nginx is missing: apt-get install -y nginx (scripts/test installs it)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {u} max_fails=0;\n"))
            .collect();
        let d = dir.display();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\nhttp {{\n\
               access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               upstream wharf {{\n{servers}    keepalive 16;\n  }}\n  server {{\n\
                 listen {address};\n    client_max_body_size 0;\n    proxy_request_buffering off;\n\
                 proxy_buffering off;\n    location / {{\n      proxy_pass http://wharf;\n\
                   proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
                   proxy_set_header Host $http_host;\n\
                   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                   proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_read_timeout 900s;\n\
                   proxy_send_timeout 900s;\n    }}\n  }}\n}}\n"
        );
        let file = dir.join("nginx.conf");
        std::fs::write(&file, config).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(&file)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {address}: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, address }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
