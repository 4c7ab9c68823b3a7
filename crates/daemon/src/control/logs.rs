//! Streaming an app's logs to a client: what is on disk, then (with follow) what comes next.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::mpsc;

pub async fn stream(
    dir: PathBuf,
    service: Option<String>,
    since: Option<SystemTime>,
    follow: bool,
    redactor: Option<Arc<secrets::Redactor>>,
    out: mpsc::Sender<Bytes>,
) {
    let show = |line: &supervisor::logs::LogLine| {
        let text = line.to_string();
        match &redactor {
            Some(r) => r.redact(&text).into_owned(),
            None => text,
        }
    };
    if follow {
        let mut lines = supervisor::logs::follow(dir, service, since);
        while let Some(line) = lines.recv().await {
            if out
                .send(Bytes::from(format!("{}\n", show(&line))))
                .await
                .is_err()
            {
                return; // client gone; dropping `lines` ends the follower
            }
        }
        return;
    }
    let read = tokio::task::spawn_blocking(move || {
        supervisor::logs::read(&dir, service.as_deref(), since)
    })
    .await;
    let lines = match read {
        Ok(Ok(lines)) => lines,
        Ok(Err(err)) => {
            let _ = out
                .send(Bytes::from(format!("error: read logs: {err}\n")))
                .await;
            return;
        }
        Err(_) => return,
    };
    // Batch lines into chunks so a large log does not cost one frame per line.
    let mut chunk = String::new();
    for line in lines {
        chunk.push_str(&show(&line));
        chunk.push('\n');
        if chunk.len() > 32 * 1024
            && out
                .send(Bytes::from(std::mem::take(&mut chunk)))
                .await
                .is_err()
        {
            return;
        }
    }
    if !chunk.is_empty() {
        let _ = out.send(Bytes::from(chunk)).await;
    }
}
