//! What `serve` would run with, in words: the listener, the refresh engine's limits, the webhook policy and
//! the request limits, computed from the same [`ServeArgs`] (and the same conversions) `serve` uses, so
//! `linkvault config check` reports what a start would actually do. Secrets (the metrics token) are only
//! ever reported as set or not.

use std::time::Duration;

use super::ServeArgs;

impl ServeArgs {
    pub(crate) fn sandbox(&self) -> bool {
        self.sandbox
    }

    pub(crate) fn catalog_file(&self) -> Option<&std::path::Path> {
        self.catalog.as_deref()
    }

    /// The origin link tokens point at, before the listener is bound (port 0 is only known at start).
    pub(crate) fn planned_public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.listen.port() == 0 => format!("http://{}:<port chosen at start>", self.listen.ip()),
            None => format!("http://{}", self.listen),
        }
    }

    /// `(topic, description)` lines, in the order `serve` sets things up.
    pub(crate) fn plan(&self) -> Vec<(&'static str, String)> {
        let public_url = self.planned_public_url();
        let mut lines = vec![("listen", format!("{} (link tokens point at {public_url})", self.listen))];
        let listener = self.listener.limits();
        lines.push((
            "listener",
            format!(
                "{} connections at most, {} requests in flight, request head within {} s, answer within {} s",
                listener.max_connections,
                listener.max_in_flight,
                listener.header_read_timeout.as_secs(),
                listener.request_timeout.as_secs()
            ),
        ));
        lines.push((
            "sandbox",
            if self.sandbox {
                format!("on: sandbox exchanges at {public_url}/sandbox, demo client created on first start")
            } else {
                "off".to_owned()
            },
        ));
        let engine = self.tuning.engine();
        let upstream = self.tuning.limits();
        // As the engine does at start: the lease always outlives two worst-case grants and their write-back.
        let lease = engine.lease.max((upstream.worst_case() + engine.write_back_allowance) * 2);
        lines.push((
            "refresh",
            format!(
                "{} grants/s per integration (burst {}), {} at once per integration, lease {} s, upstream calls \
                 bounded at {} s",
                engine.per_integration_rate_per_sec,
                engine.per_integration_burst,
                engine.per_integration_concurrency,
                lease.as_secs(),
                upstream.total_timeout.as_secs()
            ),
        ));
        lines.push((
            "webhooks",
            format!(
                "{}; delivered events kept {} days",
                self.webhooks.describe(self.sandbox),
                self.webhook_retention_days
            ),
        ));
        let limits = self.limits.config();
        let per_minute = |limit: Option<std::num::NonZeroU32>, what: &str| match limit {
            Some(n) => format!("{n}/min {what}"),
            None => format!("off {what}"),
        };
        lines.push((
            "rate limits",
            [
                per_minute(limits.api_per_client, "per API client"),
                per_minute(limits.link_per_address, "Link per address"),
                per_minute(limits.link_sessions_per_address, "Link sessions per address"),
                per_minute(limits.link_per_session, "per Link session"),
                per_minute(limits.sign_ins_per_session, "sign-ins per Link session"),
            ]
            .join(", ")
                + if limits.trust_forwarded_for { "; addresses from X-Forwarded-For" } else { "" },
        ));
        lines.push((
            "metrics",
            if self.metrics_token.is_some() { "/metrics requires the bearer token (set)" } else { "/metrics is open" }
                .to_owned(),
        ));
        lines.push((
            "keys",
            match self.key_schedule() {
                Some(every) => format!(
                    "a new key version every {}, data keys re-wrapped under it, the old one deleted once unused",
                    period(every)
                ),
                None => "key-version schedule off (run `linkvault keys rotate`)".to_owned(),
            },
        ));
        lines.push(("housekeeping", format!("expired Link rows purged every {}", minutes(super::LINK_PURGE_INTERVAL))));
        lines
    }
}

/// `24 h`, `90 min` or `45 s`: the largest unit that divides the period.
fn period(d: Duration) -> String {
    match d.as_secs() {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn minutes(d: Duration) -> String {
    format!("{} min", d.as_secs() / 60)
}
