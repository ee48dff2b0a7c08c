use std::sync::Arc;
use std::time::Duration;

use domain::base::iana::{Class, Rcode, Rtype};

use crate::plugin::{BoxFuture, Next, Plugin, Reply, Request, ServeError};
use crate::testing::{check_contract, query, setup, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "cancel", config: "cancel", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

/// A `next` that answers after its delay (virtual time in these tests).
struct Slow(Duration);

impl Plugin for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        Box::pin(async move {
            tokio::time::sleep(self.0).await;
            Ok(Reply::for_request(req))
        })
    }
}

async fn run(text: &str, delay: Duration) -> Result<Reply, ServeError> {
    let mut chain: Vec<Arc<dyn Plugin>> = setup(text, &["."]).unwrap_or_else(|e| panic!("{text}: {e}"));
    chain.push(Arc::new(Slow(delay)));
    let mut req = query("example.org.", Rtype::A);
    Next::new(&chain).serve(&mut req).await
}

#[tokio::test(start_paused = true)]
async fn readme_default_limit() {
    assert!(run("cancel", Duration::from_millis(5000)).await.is_ok());
    let e = run("cancel", Duration::from_millis(5002)).await.expect_err("canceled");
    assert_eq!(e.rcode, Rcode::SERVFAIL);
    assert!(e.to_string().contains("5.001s"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn readme_one_second() {
    assert!(run("cancel 1s", Duration::from_millis(999)).await.is_ok());
    let start = tokio::time::Instant::now();
    assert!(run("cancel 1s", Duration::from_secs(60)).await.is_err());
    assert_eq!(start.elapsed(), Duration::from_secs(1), "gives up at the deadline, not when next finishes");
}

#[test]
fn rejects_bad_timeouts() {
    for (text, want) in [("cancel soon", "expected a duration"), ("cancel 0s", "longer than 0s"), ("cancel 1s 2s", "unexpected argument")] {
        let e = setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}
