//! The fake Kubernetes API server of the tests (tests/common/fake_k8s.rs), loaded with a cluster
//! of a given size, for benchmarks: `scripts/bench k8s` runs it and points a release ferrite at
//! it. Prints `listening on http://127.0.0.1:PORT` once every object is loaded, then serves until
//! killed.
//!
//! Usage: cargo run --example fake_k8s_api -- [SERVICES] [ENDPOINTS_PER_SERVICE] [NAMESPACES]
//! (10000, 5 and 100 by default: 10,000 services, 50,000 endpoints, as in the README's figures).

#[path = "../tests/common/fake_k8s.rs"]
mod fake_k8s;

use fake_k8s::{namespace, service, slice, FakeApi};

fn arg(i: usize, default: usize) -> usize {
    std::env::args().nth(i).map_or(default, |a| a.parse().unwrap_or_else(|_| panic!("argument {i}: a number, got {a:?}")))
}

fn main() {
    let (services, per_service, namespaces) = (arg(1, 10_000), arg(2, 5), arg(3, 100).max(1));
    let api = FakeApi::start();
    for n in 0..namespaces {
        api.apply(namespace(&format!("ns-{n}")));
    }
    api.apply(namespace("kube-system"));
    for i in 0..services {
        let ns = format!("ns-{}", i % namespaces);
        let name = format!("svc-{i}");
        // ClusterIPs in 10.96.0.0/12 and pod addresses in 10.244.0.0/16 and up, as kubeadm's
        // defaults, each unique.
        let cluster_ip = format!("10.{}.{}.{}", 96 + i / 65536, (i / 256) % 256, i % 256);
        api.apply(service(&ns, &name, &[&cluster_ip], &[("http", "TCP", 80), ("https", "TCP", 443)]));
        let ips: Vec<String> = (0..per_service)
            .map(|j| {
                let k = i * per_service + j;
                format!("10.{}.{}.{}", 244 + k / 65536, (k / 256) % 256, k % 256)
            })
            .collect();
        let pods: Vec<String> = (0..per_service).map(|j| format!("{name}-7d9f5c{:04x}-{j:05}", i % 65536)).collect();
        let eps: Vec<(&str, Option<&str>, &str, bool)> = ips.iter().zip(&pods).map(|(ip, pod)| (ip.as_str(), None, pod.as_str(), true)).collect();
        api.apply(slice(&ns, &format!("{name}-abcde"), &name, &eps, &[("http", "TCP", 8080), ("https", "TCP", 8443)]));
    }
    println!("listening on {}", api.url());
    loop {
        std::thread::park();
    }
}
