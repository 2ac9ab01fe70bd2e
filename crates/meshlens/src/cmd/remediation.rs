//! `meshlens remediation list|undo ID`: the actions a server's remediation hooks took
//! (`GET /api/v1/remediations`) and undoing one (`POST /api/v1/remediations/{id}/undo`).

use anyhow::{anyhow, bail};
use serde_json::Value;

use crate::httpc;

#[derive(clap::Args)]
pub struct Args {
    /// The server whose remediations these are.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9090")]
    server: String,
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// The configured remediations and the actions taken, newest first.
    List {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Revert a mesh action's edits (a webhook cannot be undone).
    Undo {
        /// The action's id, as listed (`rem-3`) or in its event's `undo`.
        id: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/').to_string();
    match args.command {
        Sub::List { output } => {
            let body = call("GET", &format!("{base}/api/v1/remediations"))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&body["data"])?),
                Output::Text => print!("{}", table(&body["data"])),
            }
        }
        Sub::Undo { id } => {
            let url = format!("{base}/api/v1/remediations/{}/undo", httpc::urlencode(&id));
            let body = call("POST", &url)?;
            let d = &body["data"];
            let files: Vec<&str> = d["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["file"].as_str())
                .collect();
            println!(
                "undid {id} ({} of {}): restored {}",
                d["action"]["type"].as_str().unwrap_or("action"),
                d["remediation"].as_str().unwrap_or("?"),
                files.join(", ")
            );
        }
    }
    Ok(())
}

/// One request; a non-2xx answer is an error with the server's message.
fn call(method: &str, url: &str) -> anyhow::Result<Value> {
    let r = httpc::Client::new()?.request(method, url, &[], b"")?;
    let body: Value = serde_json::from_slice(&r.body).map_err(|e| {
        anyhow!(
            "{method} {url}: {} and the answer is not JSON: {e}",
            r.status
        )
    })?;
    if !(200..300).contains(&r.status) {
        bail!(
            "{method} {url}: {} {}",
            r.status,
            body["error"].as_str().unwrap_or("error")
        );
    }
    Ok(body)
}

fn table(d: &Value) -> String {
    let mut out = String::new();
    if d["configured"] != true {
        return "remediation is not configured on this server (--remediation.config)\n".into();
    }
    if d["meshWrite"] != true {
        out.push_str("mesh actions are dry runs: the server runs without --mesh-write\n");
    }
    let mut rows = vec![[
        "ID",
        "TIME",
        "REMEDIATION",
        "ACTION",
        "SERVICE",
        "STATUS",
        "MESSAGE",
    ]
    .map(String::from)];
    for a in d["actions"].as_array().into_iter().flatten() {
        let s = |v: &Value| v.as_str().unwrap_or("").to_string();
        let mut status = s(&a["status"]);
        if a["undone"].is_object() {
            status.push_str(", undone");
        }
        rows.push([
            s(&a["id"]),
            a["timeMs"]
                .as_i64()
                .map(meshlens_model::time::rfc3339_ms)
                .unwrap_or_default(),
            s(&a["remediation"]),
            s(&a["action"]["type"]),
            s(&a["service"]),
            status,
            s(&a["message"]),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if rows.len() == 1 {
        out.push_str("(no actions yet)\n");
    }
    out
}
