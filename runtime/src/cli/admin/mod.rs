//! The admin CLI: `jobstack plugin push|list`, `jobstack artifact push|list`, `jobstack task ...` and
//! `jobstack results`, each a thin layer over the daemon's admin API through
//! [`ApiClient`].
//!
//! Every command takes the same connection flags ([`ServerArgs`]) and `--json`.
//! Without `--json` the output is for people (tables, one-line summaries);
//! with it, the API's own JSON, so scripts see exactly what the daemon answered.
//! API errors reach the user as `error: <the daemon's message>` and exit code 1;
//! a refused token adds where the token comes from.

pub mod artifact;
pub mod inventory;
pub mod plugin;
pub mod results;
pub mod table;
pub mod task;
pub mod task_flags;
pub mod view;
pub mod watch;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use jobstack::client::{ApiClient, ClientError, ClientTls};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The daemon's address when neither `--server` nor `JOBSTACK_SERVER` is given:
/// where `jobstack serve` listens by default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// How to reach the daemon: shared by every admin command.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The daemon's URL.
    #[arg(long, env = "JOBSTACK_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// An admin token (printed once by the daemon at its first start).
    #[arg(long, env = "JOBSTACK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the CA that signed the daemon's TLS certificate.
    #[arg(long, env = "JOBSTACK_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

impl ServerArgs {
    /// A client of the daemon with the admin token, if given.
    pub fn client(&self) -> anyhow::Result<Admin> {
        let client = ApiClient::new(&self.server, ClientTls { ca_file: self.ca_file.clone() })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let has_token = self.token.as_deref().is_some_and(|t| !t.trim().is_empty());
        let client = match &self.token {
            Some(token) if has_token => client.with_token(token),
            _ => client,
        };
        Ok(Admin { client, has_token, json: self.json })
    }
}

/// Arguments of the commands that upload a file (`plugin push`, `artifact push`).
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The file: a plugin component (.wasm), or any artifact.
    pub file: PathBuf,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// A client of the admin API that turns [`ClientError`]s into messages for
/// people, and prints answers as `--json` asked.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The underlying client.
    pub client: ApiClient,
    has_token: bool,
    json: bool,
}

impl Admin {
    /// Turn an API error into the message the user sees.
    pub fn explain(&self, error: ClientError) -> anyhow::Error {
        anyhow::anyhow!("{}", explain(error, self.has_token))
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.client.get_json(path).await.map_err(|e| self.explain(e))
    }

    /// `POST path` without a body.
    pub async fn post<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.client.post(path).await.map_err(|e| self.explain(e))
    }

    /// `POST path` with a JSON body; the daemon must answer one (`what` names it).
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self, path: &str, body: &B, what: &str,
    ) -> anyhow::Result<T> {
        self.client
            .post_json(path, body)
            .await
            .map_err(|e| self.explain(e))?
            .ok_or_else(|| anyhow::anyhow!("the daemon answered no {what}"))
    }

    /// A request answered with no body (`DELETE`, a re-send).
    pub async fn send_empty(&self, method: reqwest::Method, path: &str) -> anyhow::Result<()> {
        self.client.send_empty(method, path).await.map_err(|e| self.explain(e))
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self, path: &str, body: &B,
    ) -> anyhow::Result<T> {
        self.client.put_json(path, body).await.map_err(|e| self.explain(e))
    }

    /// `POST path` with the bytes of `file`.
    pub async fn upload<T: DeserializeOwned>(
        &self, path: &str, file: &Path, content_type: &str,
    ) -> anyhow::Result<T> {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        self.client.post_bytes(path, bytes, content_type).await.map_err(|e| self.explain(e))
    }

    /// Print the daemon's answer: its JSON with `--json`, else `line(answer)`.
    pub fn print<T: Serialize + ?Sized>(
        &self, answer: &T, line: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<ExitCode> {
        if self.json {
            print_json(answer)?;
        } else {
            println!("{}", line(answer));
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Print a listing: its JSON with `--json`, else `empty` when it is empty,
    /// else `table(items)`.
    pub fn print_list<T: Serialize>(
        &self, items: &[T], empty: &str, table: impl FnOnce(&[T]) -> String,
    ) -> anyhow::Result<ExitCode> {
        if self.json {
            print_json(items)?;
        } else if items.is_empty() {
            println!("{empty}");
        } else {
            print!("{}", table(items));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The message of `error`, with a hint where the user can act: a token to give
/// or fix.
pub fn explain(error: ClientError, has_token: bool) -> String {
    match &error {
        ClientError::Api { status: 401, .. } if !has_token => format!(
            "{error}\nhint: no admin token given: pass --token or set JOBSTACK_TOKEN \
             (the daemon prints its admin token once, at its first start)"
        ),
        ClientError::Api { status: 401, .. } => format!(
            "{error}\nhint: the daemon refused the admin token from --token / JOBSTACK_TOKEN; \
             use the token printed at the daemon's first start"
        ),
        _ => error.to_string(),
    }
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unauthorized() -> ClientError {
        ClientError::Api {
            status: 401,
            code: "unauthorized".into(),
            message: "missing Authorization: Bearer <token>".into(),
        }
    }

    #[test]
    fn missing_token_gets_a_hint() {
        let text = explain(unauthorized(), false);
        assert!(text.starts_with("missing Authorization"), "{text}");
        assert!(text.contains("--token") && text.contains("JOBSTACK_TOKEN"), "{text}");
        assert!(text.contains("first start"), "{text}");
    }

    #[test]
    fn refused_token_gets_a_hint() {
        let text = explain(unauthorized(), true);
        assert!(text.contains("refused the admin token"), "{text}");
    }

    #[test]
    fn other_errors_are_the_daemons_message() {
        let e = ClientError::Api {
            status: 400,
            code: "unknown_plugin".into(),
            message: "unknown plugin \"nope\": upload it first".into(),
        };
        assert_eq!(explain(e, true), "unknown plugin \"nope\": upload it first");
    }
}
