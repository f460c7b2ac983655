//! The operator's webhook egress options, shared by `serve` (the deliverer) and `client webhook set` (the
//! check at registration): which non-public receivers and whether plain http are allowed.

use clap::Args;
use linkvault_vault::WebhookPolicy;
use linkvault_vault::webhook_policy::{parse_cidr, parse_host};

#[derive(Debug, Clone, Args)]
pub struct WebhookEgress {
    /// Allow plain http webhook URLs (https only by default; `serve --sandbox` allows http).
    #[arg(long, env = "LINKVAULT_WEBHOOK_ALLOW_HTTP")]
    webhook_allow_http: bool,
    /// Host names (comma-separated) webhooks may reach although they resolve to private or other non-public
    /// addresses: on-premises receivers.
    #[arg(long, env = "LINKVAULT_WEBHOOK_ALLOW_HOSTS", value_delimiter = ',', value_parser = parse_host)]
    webhook_allow_hosts: Vec<String>,
    /// Networks (CIDR, comma-separated, e.g. 10.20.0.0/16,fd00::/8) webhooks may reach although not public.
    #[arg(long, env = "LINKVAULT_WEBHOOK_ALLOW_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    webhook_allow_cidrs: Vec<ipnet::IpNet>,
}

impl WebhookEgress {
    /// The policy these options describe; `sandbox` adds loopback receivers over http.
    pub fn policy(&self, sandbox: bool) -> WebhookPolicy {
        let policy = WebhookPolicy::default()
            .with_http_allowed(self.webhook_allow_http)
            .with_allowed_hosts(&self.webhook_allow_hosts)
            .with_allowed_cidrs(self.webhook_allow_cidrs.iter().copied());
        if sandbox { policy.sandbox() } else { policy }
    }

    /// The policy in words, for `config check`.
    pub fn describe(&self, sandbox: bool) -> String {
        let scheme = if self.webhook_allow_http || sandbox { "https and http" } else { "https only" };
        let mut allowed: Vec<String> = self.webhook_allow_hosts.clone();
        allowed.extend(self.webhook_allow_cidrs.iter().map(ToString::to_string));
        if sandbox {
            allowed.push("loopback (sandbox)".to_owned());
        }
        let receivers = if allowed.is_empty() {
            "non-public receivers refused".to_owned()
        } else {
            format!("non-public receivers refused except {}", allowed.join(", "))
        };
        format!("{scheme}; {receivers}")
    }
}
