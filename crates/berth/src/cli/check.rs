//! `berth check [DIR]`: validate berth.toml exactly as the daemon will, and change nothing.

use std::path::Path;

use anyhow::Result;

use crate::{EXIT_BAD_INPUT, output};

pub fn run(dir: &Path, env: Option<&str>) -> Result<u8> {
    let Some(spec) = load(dir, env)? else {
        return Ok(EXIT_BAD_INPUT);
    };
    let services: Vec<String> = spec
        .services
        .iter()
        .map(|(name, s)| {
            if s.instances > 1 {
                format!("{name} x{}", s.instances)
            } else {
                name.clone()
            }
        })
        .collect();
    output::line(format!(
        "ok: app {} — {} service{} ({}), {} route{}",
        spec.instance_name(),
        spec.services.len(),
        plural(spec.services.len()),
        services.join(", "),
        spec.routes.len(),
        plural(spec.routes.len()),
    ));
    Ok(0)
}

/// Read and validate `DIR/berth.toml`. Problems are printed; `None` means the spec is invalid.
pub fn load(dir: &Path, env: Option<&str>) -> Result<Option<spec::AppSpec>> {
    let path = dir.join("berth.toml");
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(super::BadInput(format!(
                "no berth.toml in {}: run berth in your app's directory, or pass it as DIR",
                dir.display()
            ))
            .into());
        }
        Err(err) => {
            return Err(anyhow::Error::new(err).context(format!("read {}", path.display())));
        }
    };
    match spec::parse_env(&path.display().to_string(), &source, env) {
        Ok(spec) => Ok(Some(spec)),
        Err(diagnostics) => {
            output::diagnostics(diagnostics);
            Ok(None)
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
