//! on: runs a command when the server starts or shuts down, as CoreDNS's on does. The command
//! runs directly (no shell), with the server's standard output and error; it blocks until it
//! ends unless its last argument is `&`, which runs it in the background. Each `on` line runs
//! once, however many keys its block has. Setup only: it registers hooks and adds no handler.

use std::process::{Command, Stdio};

use crate::plugin::prelude::*;

/// `on startup|shutdown COMMAND [ARGS...] [&]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub event: Event,
    /// The program and its arguments; a last `&` runs it in the background.
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// The server has started listening.
    Startup,
    /// The server is shutting down (SIGTERM or SIGINT).
    Shutdown,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_block()?;
    let Some(event) = d.args.first() else {
        return Err(d.err("on needs an event (startup or shutdown) and a command"));
    };
    let event = match event.as_str() {
        "startup" => Event::Startup,
        "shutdown" => Event::Shutdown,
        other => return Err(event.err(format!("unknown event {other:?}: expected startup or shutdown"))),
    };
    let command: Vec<String> = d.args[1..].iter().map(|t| t.text.clone()).collect();
    if command.is_empty() || command[0] == "&" {
        return Err(d.err("on needs a command to run"));
    }
    Ok(Config { event, command })
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let mut args = c.command.clone();
    let background = args.last().is_some_and(|a| a == "&");
    if background {
        args.pop();
    }
    if args.is_empty() {
        return Err(SetupError::new("on needs a command to run"));
    }
    let event = c.event;
    let hook = move |_: std::net::SocketAddr| run(event, &args, background);
    match event {
        Event::Startup => ctx.on_startup(hook),
        Event::Shutdown => ctx.on_shutdown(hook),
    }
    Ok(())
}

/// Runs the command; a failure is logged, it never stops the server.
fn run(event: Event, args: &[String], background: bool) {
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]).stdin(Stdio::null());
    let what = args.join(" ");
    match cmd.spawn() {
        Err(e) => ::log::error!(target: "plugin/on", "{event:?} command {what:?}: {e}"),
        Ok(mut child) if !background => match child.wait() {
            Ok(status) if !status.success() => ::log::error!(target: "plugin/on", "{event:?} command {what:?}: {status}"),
            Err(e) => ::log::error!(target: "plugin/on", "{event:?} command {what:?}: {e}"),
            Ok(_) => {}
        },
        // In the background: reaped by a thread so it leaves no zombie.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
    }
}

#[cfg(test)]
mod tests;
