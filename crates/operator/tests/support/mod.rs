//! The real parts the operator's tests run against: a Kubernetes API server (etcd +
//! kube-apiserver from `../shared/tools/kube-apiserver`, one per test binary, each test in its
//! own namespace), `wharf serve` on loopback started from what the operator rendered, and the
//! controller itself, in process.
//!
//! There is no kubelet, so no pod runs: the test plays the kubelet's part, starting the registry
//! with the ConfigMap's `wharf.yaml` and the Secret's password, and the operator reaches it
//! through `--registry-url`'s map instead of the Service.

#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::oneshot;

use wharf_operator::crd::{WharfRegistry, WharfRegistryStatus};
use wharf_operator::reconcile::{self, Context};
use wharf_operator::render::{CONFIG_KEY, Names, PASSWORD_KEY};

/// How long any awaited condition may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The API server this test binary shares.
pub struct Cluster {
    /// Its kubeconfig.
    pub kubeconfig: PathBuf,
    /// Debian's kubectl from the tool's cache.
    pub kubectl: PathBuf,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The shared API server, started at the first call. A machine without it fails the test with
/// what to do: these tests are worth nothing skipped.
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start_cluster) {
        Ok(cluster) => cluster,
        Err(why) => {
            panic!("the Kubernetes API server for the operator's tests is unavailable: {why}")
        }
    }
}

fn tools() -> PathBuf {
    std::env::var_os("WHARF_TEST_KUBE_TOOLS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/kube-apiserver"),
        PathBuf::from,
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_cluster() -> Result<Cluster, String> {
    let tools = tools();
    let start = tools.join("start.sh");
    if !start.exists() {
        return Err(format!(
            "{} is missing (set WHARF_TEST_KUBE_TOOLS to the folder of start.sh)",
            start.display()
        ));
    }
    let build = Command::new("bash")
        .arg(tools.join("build.sh"))
        .output()
        .map_err(|e| format!("cannot run build.sh: {e}"))?;
    if !build.status.success() {
        return Err(format!(
            "build.sh failed (its log is build.log in the cache it names): {}",
            String::from_utf8_lossy(&build.stderr)
        ));
    }
    let cache = PathBuf::from(String::from_utf8_lossy(&build.stdout).trim());
    // A folder of its own, outside any TempDir: the watchdog below removes it.
    let dir = std::env::temp_dir().join(format!("wharf-operator-kube-{}", std::process::id()));
    let started = Command::new("bash")
        .arg(&start)
        .arg(&dir)
        .env("ETCD_PORT", free_port().to_string())
        .env("API_PORT", free_port().to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run start.sh: {e}"))?;
    if !started.status.success() {
        return Err(format!(
            "start.sh failed: {}{}",
            String::from_utf8_lossy(&started.stdout),
            String::from_utf8_lossy(&started.stderr)
        ));
    }
    // The API server outlives nothing: a watchdog stops it when this test process ends, however
    // it ends (statics are never dropped).
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash '{stop}' '{dir}' >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        stop = tools.join("stop.sh").display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the watchdog: {e}"))?;
    let cluster = Cluster {
        kubeconfig: dir.join("kubeconfig"),
        kubectl: cache.join("bin/kubectl"),
    };
    // The CRD, as `wharf-operator crd` prints it, applied with kubectl as a user would.
    let crd = Command::new(env!("CARGO_BIN_EXE_wharf-operator"))
        .arg("crd")
        .output()
        .map_err(|e| format!("cannot run wharf-operator crd: {e}"))?;
    if !crd.status.success() {
        return Err(format!(
            "wharf-operator crd failed: {}",
            String::from_utf8_lossy(&crd.stderr)
        ));
    }
    cluster.kubectl_with_input(&["apply", "-f", "-"], &crd.stdout)?;
    // The whole install as a user applies it: the operator's namespace, RBAC and Deployment (no
    // pod runs here; the RBAC is what the tests' operator runs with, see `operator_client`).
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
    cluster.kubectl(&["apply", "-k", deploy])?;
    cluster.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/wharfregistries.wharf.dev",
    ])?;
    Ok(cluster)
}

impl Cluster {
    /// Runs kubectl against the cluster; answers its standard output.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_with_input(args, b"")
    }

    /// Runs kubectl with `input` on its standard input.
    pub fn kubectl_with_input(&self, args: &[&str], input: &[u8]) -> Result<String, String> {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.kubectl.display()))?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input)
            .map_err(|e| e.to_string())?;
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// A client with the operator's identity from deploy/rbac.yaml (its ServiceAccount,
    /// impersonated), so a test run by it fails where the RBAC grants too little.
    pub async fn operator_client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        config.auth_info.impersonate =
            Some("system:serviceaccount:wharf-operator:wharf-operator".to_owned());
        config.auth_info.impersonate_groups = Some(vec![
            "system:serviceaccounts".to_owned(),
            "system:serviceaccounts:wharf-operator".to_owned(),
            "system:authenticated".to_owned(),
        ]);
        Client::try_from(config).unwrap()
    }

    /// A client for the cluster.
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        Client::try_from(config).unwrap()
    }
}

/// A namespace of its own for a test, and a client.
pub async fn namespace(prefix: &str) -> (Client, String) {
    let client = cluster().client().await;
    let name = format!("{prefix}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name}
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    (client, name)
}

/// The controller, running in this test's runtime until dropped.
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    /// Starts the controller for `namespace`, reaching each registry at `urls`
    /// (`NAMESPACE/NAME` to URL), as `wharf-operator run --namespace --registry-url` does.
    pub async fn start(
        client: &Client,
        namespace: &str,
        urls: BTreeMap<String, String>,
    ) -> Operator {
        let context = Context::new(client.clone(), reqwest::Client::new(), urls)
            .await
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let namespace = namespace.to_owned();
        let task = tokio::spawn(async move {
            reconcile::run(Arc::new(context), Some(&namespace), async {
                let _ = stopped.await;
            })
            .await;
        });
        Operator {
            stop: Some(stop),
            task,
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// The real `wharf-operator run` binary, killed when dropped.
pub struct OperatorProcess {
    child: Child,
}

impl OperatorProcess {
    /// `wharf-operator run --namespace NAMESPACE [--registry-url ...]` against the cluster,
    /// electing its leader with a Lease in that namespace.
    pub fn start(namespace: &str, urls: &BTreeMap<String, String>) -> OperatorProcess {
        OperatorProcess::start_with(namespace, urls, &[])
    }

    /// As [`OperatorProcess::start`], with more arguments.
    pub fn start_with(
        namespace: &str,
        urls: &BTreeMap<String, String>,
        args: &[&str],
    ) -> OperatorProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wharf-operator"));
        command
            .args([
                "run",
                "--namespace",
                namespace,
                "--lease-namespace",
                namespace,
            ])
            .args(args)
            .env("KUBECONFIG", &cluster().kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (key, url) in urls {
            command.arg("--registry-url").arg(format!("{key}={url}"));
        }
        OperatorProcess {
            child: command.spawn().unwrap(),
        }
    }
}

impl OperatorProcess {
    /// Sends SIGTERM (what Kubernetes sends a pod) and waits for the process to end.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }

    /// Kills the process at once, as a node that dies (nothing is released).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wharf serve` on loopback, as the registry's pod would run it.
pub struct Registry {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin password the operator generated.
    pub password: String,
    /// A client that trusts the registry's certificate, if it has one.
    pub http: reqwest::Client,
    child: Child,
    _data: tempfile::TempDir,
}

impl Registry {
    /// Stops the registry (as a pod that went away).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `wharf` binary of this workspace (`cargo test --workspace` builds it for its own tests).
fn wharf_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WHARF_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<this test> -> target/<profile>/wharf
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("wharf");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p wharf), or set WHARF_BIN",
        path.display()
    );
    path
}

impl Registry {
    /// A free loopback address for a registry to be started later.
    pub fn address() -> String {
        format!("127.0.0.1:{}", free_port())
    }

    /// Starts `wharf serve` on `address` with the configuration and password the operator
    /// rendered for the resource `name` (waiting for them to exist).
    pub async fn start(client: &Client, namespace: &str, name: &str, address: &str) -> Registry {
        Registry::start_with(client, namespace, name, address, None, None).await
    }

    /// As [`Registry::start`], but with the first superuser's password `password` instead of
    /// the operator's (a registry whose administrator was made before), and serving HTTPS with
    /// the `kubernetes.io/tls` Secret `tls` (as the pod mounts it).
    pub async fn start_with(
        client: &Client,
        namespace: &str,
        name: &str,
        address: &str,
        password: Option<&str>,
        tls: Option<&str>,
    ) -> Registry {
        let names = Names::of(name);
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let config = eventually("the rendered ConfigMap", || async {
            config_maps.get_opt(&names.config).await.ok().flatten()
        })
        .await;
        let secret = eventually("the operator's Secret", || async {
            secrets.get_opt(&names.credentials).await.ok().flatten()
        })
        .await;
        let generated = String::from_utf8(secret.data.unwrap()[PASSWORD_KEY].0.clone()).unwrap();
        let password = password.map_or(generated, str::to_owned);
        let data = tempfile::tempdir().unwrap();
        let config_file = data.path().join(CONFIG_KEY);
        std::fs::write(&config_file, &config.data.unwrap()[CONFIG_KEY]).unwrap();
        let mut command = Command::new(wharf_binary());
        let mut http = reqwest::Client::builder();
        let mut scheme = "http";
        if let Some(tls) = tls {
            let secret = secrets.get(tls).await.unwrap();
            let files = secret.data.unwrap();
            for (key, variable) in [("tls.crt", "WHARF_TLS_CERT"), ("tls.key", "WHARF_TLS_KEY")] {
                let path = data.path().join(key);
                std::fs::write(&path, &files[key].0).unwrap();
                command.env(variable, &path);
            }
            http = http
                .add_root_certificate(reqwest::Certificate::from_pem(&files["ca.crt"].0).unwrap());
            scheme = "https";
        }
        let http = http.build().unwrap();
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&config_file)
            .arg("--listen")
            .arg(address)
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .env("WHARF_ADMIN_PASSWORD", &password)
            .env_remove("WHARF_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.path().join("wharf.log")).unwrap())
            .spawn()
            .unwrap();
        let registry = Registry {
            url: format!("{scheme}://{address}"),
            password,
            http: http.clone(),
            child,
            _data: data,
        };
        let healthz = format!("{}/healthz", registry.url);
        eventually("wharf serve to answer", || async {
            http.get(&healthz)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        })
        .await;
        registry
    }

    /// `POST /v2/REPOSITORY/blobs/uploads/` as the admin: the first request of every push.
    pub async fn start_upload(&self, repository: &str) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(format!("{}/v2/{repository}/blobs/uploads/", self.url))
            .basic_auth("admin", Some(&self.password))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// `GET /api/v1/state` as the admin.
    pub async fn state(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/api/v1/state", self.url))
            .basic_auth("admin", Some(&self.password))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Polls `probe` until it answers something, failing the test after [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the resource's status satisfies `check`, and answers the resource.
pub async fn status_where(
    api: &Api<WharfRegistry>,
    name: &str,
    what: &str,
    check: impl Fn(&WharfRegistry, &WharfRegistryStatus) -> bool,
) -> WharfRegistry {
    eventually(what, || async {
        let registry = api.get(name).await.ok()?;
        let status = registry.status.clone()?;
        check(&registry, &status).then_some(registry)
    })
    .await
}

/// The condition `type_` of `status`: (status, reason, message, observedGeneration).
pub fn condition<'a>(
    status: &'a WharfRegistryStatus,
    type_: &str,
) -> Option<&'a wharf_operator::crd::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// A certificate authority and a certificate it signed for 127.0.0.1, made with openssl, as a
/// `kubernetes.io/tls` Secret's data would hold them (with cert-manager's `ca.crt`).
pub fn tls_files() -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl (scripts/test installs it)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=registry",
    ]);
    std::fs::write(
        dir.path().join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    ["tls.crt", "tls.key", "ca.crt"]
        .into_iter()
        .map(|name| {
            (
                name.to_owned(),
                std::fs::read(dir.path().join(name)).unwrap(),
            )
        })
        .collect()
}
