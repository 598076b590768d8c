//! `jobstack webhook add|list|remove|dead|resend`: subscriptions to the
//! daemon's events and the events their delivery gave up on.

use std::process::ExitCode;

use jobstack::notify::{DeadLetter, NewSubscription, Subscription};
use jobstack::protocol::WebhookCreated;
use reqwest::Method;

use super::ServerArgs;
use super::table::{Table, time};

/// The webhook commands.
#[derive(Debug, clap::Subcommand)]
pub enum WebhookCommand {
    /// Subscribe URL to event kinds; prints the signing secret once.
    Add {
        /// Where to post (its host must be on the daemon's --webhook-allow).
        url: String,
        /// Event kinds, comma-separated: run.finished, run.failed, part.failed,
        /// asset.appeared, asset.changed, asset.disappeared, agent.down,
        /// agent.up, plugin.uploaded.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// The signing secret (at least 16 characters) [default: generated].
        #[arg(long, env = "JOBSTACK_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the subscriptions and how far their delivery got.
    List(ServerArgs),
    /// Delete a subscription (and its dead letters).
    Remove {
        /// The subscription's id.
        id: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the events delivery gave up on.
    Dead {
        /// Of this subscription only.
        #[arg(long)]
        subscription: Option<i64>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Post a dead letter again now.
    Resend {
        /// The subscription's id.
        subscription: i64,
        /// The event's id.
        event: i64,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Run a webhook command.
pub async fn run(command: WebhookCommand) -> anyhow::Result<ExitCode> {
    match command {
        WebhookCommand::Add { url, events, secret, server } => {
            let admin = server.client()?;
            let new = NewSubscription { url, events, secret };
            let created: WebhookCreated =
                admin.post_json("/webhooks", &new, "subscription").await?;
            admin.print(&created, |c| {
                format!(
                    "subscription {} to {}\nsigning secret (shown once): {}",
                    c.subscription.id, c.subscription.url, c.secret
                )
            })
        }
        WebhookCommand::List(server) => {
            let admin = server.client()?;
            let subs: Vec<Subscription> = admin.get("/webhooks").await?;
            admin.print_list(&subs, "no webhook subscriptions", |subs| subscriptions(subs).render())
        }
        WebhookCommand::Remove { id, server } => {
            let admin = server.client()?;
            admin.send_empty(Method::DELETE, &format!("/webhooks/{id}")).await?;
            admin.print(&serde_json::json!({ "removed": id }), |_| {
                format!("removed subscription {id}")
            })
        }
        WebhookCommand::Dead { subscription, server } => {
            let admin = server.client()?;
            let path = match subscription {
                Some(id) => format!("/webhooks/dead-letters?subscription={id}"),
                None => "/webhooks/dead-letters".to_string(),
            };
            let letters: Vec<DeadLetter> = admin.get(&path).await?;
            admin.print_list(&letters, "no dead letters", |l| dead_letters(l).render())
        }
        WebhookCommand::Resend { subscription, event, server } => {
            let admin = server.client()?;
            let path = format!("/webhooks/{subscription}/dead-letters/{event}/resend");
            admin.send_empty(Method::POST, &path).await?;
            admin.print(&serde_json::json!({ "delivered": event }), |_| {
                format!("event {event} delivered to subscription {subscription}")
            })
        }
    }
}

fn subscriptions(subs: &[Subscription]) -> Table {
    let mut table = Table::new(&["ID", "URL", "EVENTS", "DELIVERED", "RETRYING", "LAST ERROR"]);
    for s in subs {
        let events: Vec<&str> = s.events.iter().map(|k| k.as_str()).collect();
        let retrying = match s.attempts {
            0 => String::new(),
            n => format!("{n} attempts, next {}", time(s.next_attempt_at)),
        };
        table.row(vec![
            s.id.to_string(),
            s.url.clone(),
            events.join(","),
            s.delivered.to_string(),
            retrying,
            s.last_error.clone().unwrap_or_default(),
        ]);
    }
    table
}

fn dead_letters(letters: &[DeadLetter]) -> Table {
    let mut table = Table::new(&["SUBSCRIPTION", "EVENT", "KIND", "ATTEMPTS", "GIVEN UP", "ERROR"]);
    for l in letters {
        table.row(vec![
            l.subscription_id.to_string(),
            l.event.id.to_string(),
            l.event.kind.to_string(),
            l.attempts.to_string(),
            time(Some(l.at)),
            l.error.clone(),
        ]);
    }
    table
}
