//! The sandbox's books, shared by every exchange's wire format: per (exchange, user) a USD cash balance, crypto
//! positions, and the transfers made, with fixed prices, per-network withdrawal fees and minimums. Each
//! exchange module (Coinbase v2, Uphold v0, Binance Spot) translates its provider's requests into these calls
//! and the answers back into the provider's JSON, so every exchange moves the same funds the same way.
//!
//! Sends are exactly once per idempotency key: a key seen before answers with the transfer it made (or a
//! conflict when the request differs), never a second debit. Transfers start `pending` and become
//! `succeeded` (with a hash) after [`SETTLE_AFTER`], so status-following code has something to follow.

use std::collections::HashMap;

use time::OffsetDateTime;

/// Fixed sandbox prices (USD), with the asset's display name.
pub const PRICES: &[(&str, &str, f64)] = &[
    ("BTC", "Bitcoin", 65_000.0),
    ("ETH", "Ethereum", 3_500.0),
    ("SOL", "Solana", 150.0),
    ("USDC", "USD Coin", 1.0),
    ("USDT", "Tether", 1.0),
    ("PYUSD", "PayPal USD", 1.0),
];

/// What the sandbox sends where: (symbol, canonical network, withdrawal fee in the symbol, minimum withdrawal).
pub const NETWORK_FEES: &[(&str, &str, f64, f64)] = &[
    ("BTC", "bitcoin", 0.0001, 0.0005),
    ("ETH", "ethereum", 0.0005, 0.001),
    ("ETH", "base", 0.00002, 0.0001),
    ("USDC", "ethereum", 2.0, 5.0),
    ("USDC", "polygon", 0.1, 1.0),
    ("USDC", "solana", 0.05, 1.0),
    ("USDC", "base", 0.05, 1.0),
    ("USDT", "ethereum", 2.0, 5.0),
    ("USDT", "polygon", 0.1, 1.0),
    ("PYUSD", "ethereum", 2.0, 5.0),
    ("PYUSD", "solana", 0.05, 1.0),
    ("SOL", "solana", 0.000_005, 0.01),
];

/// The networks the sandbox knows (canonical names, as linkvault's `networks` module names them).
pub const NETWORKS: &[&str] = &["bitcoin", "ethereum", "polygon", "solana", "base"];

/// How long a sandbox transfer stays `pending` before it settles.
pub const SETTLE_AFTER: time::Duration = time::Duration::seconds(2);

/// The sandbox usernames (Mesh's sandbox naming); all use password `Pass123`.
pub fn is_known_user(username: &str) -> bool {
    initial_book(username).is_some()
}

pub fn price(symbol: &str) -> Option<(&'static str, f64)> {
    PRICES.iter().find(|(s, _, _)| *s == symbol).map(|(_, name, p)| (*name, *p))
}

/// The fee and minimum for sending `symbol` over `network`.
pub fn network_terms(symbol: &str, network: &str) -> Result<(f64, f64), Refusal> {
    if !NETWORKS.contains(&network) {
        return Err(Refusal::UnsupportedNetwork);
    }
    NETWORK_FEES
        .iter()
        .find(|(s, n, _, _)| *s == symbol && *n == network)
        .map(|(_, _, fee, min)| (*fee, *min))
        .ok_or(Refusal::UnsupportedAsset)
}

/// Why the books refuse a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnsupportedAsset,
    UnsupportedNetwork,
    InvalidAmount,
    InvalidAddress,
    BelowMinimum,
    InsufficientFunds,
    /// The idempotency key was used for a different send.
    IdempotencyConflict,
}

impl Refusal {
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::UnsupportedAsset => "the exchange does not send that asset over that network",
            Refusal::UnsupportedNetwork => "the exchange does not send over that network",
            Refusal::InvalidAmount => "the amount must be a positive number",
            Refusal::InvalidAddress => "the destination address is missing or malformed",
            Refusal::BelowMinimum => "the amount is below the minimum withdrawal for that asset and network",
            Refusal::InsufficientFunds => "the amount plus the network fee exceeds the available balance",
            Refusal::IdempotencyConflict => "this idempotency key was used for a different transfer",
        }
    }
}

/// A send as the books see it.
#[derive(Debug, Clone, PartialEq)]
pub struct SendArgs {
    pub symbol: String,
    pub network: String,
    pub address: String,
    pub tag: Option<String>,
    /// Amount that arrives, in the symbol; the fee is debited on top.
    pub amount: f64,
}

/// A priced, checked send that has not happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub amount: f64,
    pub fee: f64,
    pub min: f64,
    pub price_usd: f64,
    pub available: f64,
    pub from_address: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LedgerTransfer {
    pub id: String,
    pub symbol: String,
    pub network: String,
    pub address: String,
    pub tag: Option<String>,
    pub amount: f64,
    pub fee: f64,
    pub from_address: String,
    pub created_at: OffsetDateTime,
    /// The on-chain hash, set when the transfer settles.
    pub hash: Option<String>,
    /// Incoming (a deposit) rather than a send.
    pub incoming: bool,
    /// The idempotency key it was sent with.
    pub idem: Option<String>,
}

impl LedgerTransfer {
    pub fn settled(&self, now: OffsetDateTime) -> bool {
        now - self.created_at >= SETTLE_AFTER
    }
}

/// One user's account at one exchange.
#[derive(Debug, Clone, Default)]
pub struct Book {
    /// The account's stable id (`coinbase-Mesh`), from which deposit addresses are derived.
    pub account_id: String,
    pub cash_usd: f64,
    /// Positions in a fixed order (the order the user was created with).
    pub holdings: Vec<(String, f64)>,
    /// Oldest first.
    pub transfers: Vec<LedgerTransfer>,
    by_idem: HashMap<String, (SendArgs, usize)>,
}

fn initial_book(username: &str) -> Option<Book> {
    let full = |factor: f64| Book {
        cash_usd: 10_000_000.0 * factor,
        holdings: vec![
            ("BTC".to_owned(), 12.5 * factor),
            ("ETH".to_owned(), 240.0 * factor),
            ("SOL".to_owned(), 5_000.0 * factor),
            ("USDC".to_owned(), 250_000.0 * factor),
        ],
        ..Book::default()
    };
    let single = |symbol: &str, amount: f64| Book { holdings: vec![(symbol.to_owned(), amount)], ..Book::default() };
    Some(match username {
        "Mesh" => full(1.0),
        "Mesh2" => Book::default(),
        "Mesh3" => Book { cash_usd: 10_000_000.0, ..Book::default() },
        "Mesh4" => full(10.0),
        "MeshBTC" => single("BTC", 10.0),
        "MeshETH" => single("ETH", 100.0),
        "MeshSOL" => single("SOL", 1_000.0),
        "MeshUSDC" => single("USDC", 100_000.0),
        "MeshUSDT" => single("USDT", 100_000.0),
        "MeshPYUSD" => single("PYUSD", 100_000.0),
        _ => return None,
    })
}

fn positive(amount: f64) -> bool {
    amount.is_finite() && amount > 0.0
}

impl Book {
    pub fn held(&self, symbol: &str) -> f64 {
        self.holdings.iter().find(|(s, _)| s == symbol).map(|(_, a)| *a).unwrap_or(0.0)
    }

    /// The account's (made-up, stable) address on a network.
    pub fn deposit_address(&self, network: &str) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, format!("{}/{network}", self.account_id).as_bytes());
        let bytes = digest.as_ref();
        if network == "solana" {
            // 44 base58 characters.
            const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
            return bytes.iter().chain(bytes.iter()).take(44).map(|b| ALPHABET[usize::from(*b) % 58] as char).collect();
        }
        let hex: String = bytes.iter().take(20).map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}")
    }

    /// Checks a send of `amount` (in the symbol) without making it.
    pub fn quote(&self, symbol: &str, network: &str, address: &str, amount: f64) -> Result<Quote, Refusal> {
        let (_, price_usd) = price(symbol).ok_or(Refusal::UnsupportedAsset)?;
        let (fee, min) = network_terms(symbol, network)?;
        if !positive(amount) {
            return Err(Refusal::InvalidAmount);
        }
        if address.trim().is_empty() || address.len() > 128 {
            return Err(Refusal::InvalidAddress);
        }
        if amount + 1e-12 < min {
            return Err(Refusal::BelowMinimum);
        }
        let available = self.held(symbol);
        if available + 1e-12 < amount + fee {
            return Err(Refusal::InsufficientFunds);
        }
        Ok(Quote { amount, fee, min, price_usd, available, from_address: self.deposit_address(network) })
    }

    /// Sends, once per `idem`: `Ok((transfer, true))` when funds moved now, `Ok((transfer, false))` when `idem`
    /// was seen before with the same request.
    pub fn send(
        &mut self,
        args: SendArgs,
        idem: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(LedgerTransfer, bool), Refusal> {
        if let Some(idem) = idem
            && let Some((first, index)) = self.by_idem.get(idem)
        {
            if *first != args {
                return Err(Refusal::IdempotencyConflict);
            }
            return self.transfers.get(*index).cloned().map(|t| (t, false)).ok_or(Refusal::IdempotencyConflict);
        }
        let quote = self.quote(&args.symbol, &args.network, &args.address, args.amount)?;
        if let Some(held) = self.holdings.iter_mut().find(|(s, _)| *s == args.symbol) {
            held.1 -= args.amount + quote.fee;
        }
        let id = uuid::Uuid::new_v4();
        let transfer = LedgerTransfer {
            id: id.to_string(),
            symbol: args.symbol.clone(),
            network: args.network.clone(),
            address: args.address.clone(),
            tag: args.tag.clone(),
            amount: args.amount,
            fee: quote.fee,
            from_address: quote.from_address,
            created_at: now,
            hash: None,
            incoming: false,
            idem: idem.map(str::to_owned),
        };
        self.transfers.push(transfer.clone());
        if let Some(idem) = idem {
            self.by_idem.insert(idem.to_owned(), (args, self.transfers.len() - 1));
        }
        Ok((transfer, true))
    }

    /// Settles transfers old enough (gives them a hash); call before reading transfers.
    pub fn settle(&mut self, now: OffsetDateTime) {
        for transfer in &mut self.transfers {
            if transfer.hash.is_none() && transfer.settled(now) {
                let simple = transfer.id.replace('-', "");
                transfer.hash = Some(format!("0x{simple}{simple}"));
            }
        }
    }

    pub fn transfer(&self, id: &str) -> Option<&LedgerTransfer> {
        self.transfers.iter().find(|t| t.id == id)
    }
}

/// Every user's book at every exchange, created on first use from the user's starting portfolio.
#[derive(Debug, Default)]
pub struct Ledger {
    books: HashMap<(&'static str, String), Book>,
}

impl Ledger {
    /// `username`'s book at `exchange` (settled as of `now`), or None for a user the sandbox does not know.
    pub fn book(&mut self, exchange: &'static str, username: &str, now: OffsetDateTime) -> Option<&mut Book> {
        let key = (exchange, username.to_owned());
        if !self.books.contains_key(&key) {
            let mut book = initial_book(username)?;
            book.account_id = format!("{exchange}-{username}");
            self.books.insert(key.clone(), book);
        }
        let book = self.books.get_mut(&key)?;
        book.settle(now);
        Some(book)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    fn send_args(amount: f64) -> SendArgs {
        SendArgs {
            symbol: "USDC".to_owned(),
            network: "base".to_owned(),
            address: "0x52908400098527886E0F7030069857D2E4169EE7".to_owned(),
            tag: None,
            amount,
        }
    }

    #[test]
    fn a_send_moves_funds_once_per_key_and_settles() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut ledger = Ledger::default();
        let book = ledger.book("coinbase", "Mesh", now).unwrap();
        let (first, moved) = book.send(send_args(5.0), Some("k1"), now).unwrap();
        assert!(moved);
        assert!((book.held("USDC") - (250_000.0 - 5.05)).abs() < 1e-9);
        let (again, moved) = book.send(send_args(5.0), Some("k1"), now).unwrap();
        assert!(!moved);
        assert_eq!(again.id, first.id);
        assert!((book.held("USDC") - (250_000.0 - 5.05)).abs() < 1e-9);
        assert_eq!(book.send(send_args(6.0), Some("k1"), now), Err(Refusal::IdempotencyConflict));
        assert!(book.transfer(&first.id).unwrap().hash.is_none());
        let book = ledger.book("coinbase", "Mesh", now + SETTLE_AFTER).unwrap();
        assert!(book.transfer(&first.id).unwrap().hash.is_some());
    }

    #[test]
    fn refusals() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut ledger = Ledger::default();
        assert!(ledger.book("coinbase", "nobody", now).is_none());
        let book = ledger.book("uphold", "Mesh", now).unwrap();
        assert_eq!(book.quote("USDC", "base", "0xabc", 0.5).unwrap_err(), Refusal::BelowMinimum);
        assert_eq!(book.quote("USDC", "base", "0xabc", 1e9).unwrap_err(), Refusal::InsufficientFunds);
        assert_eq!(book.quote("USDC", "tron", "0xabc", 5.0).unwrap_err(), Refusal::UnsupportedNetwork);
        assert_eq!(book.quote("BTC", "base", "0xabc", 1.0).unwrap_err(), Refusal::UnsupportedAsset);
        assert_eq!(book.quote("USDC", "base", " ", 5.0).unwrap_err(), Refusal::InvalidAddress);
        assert_eq!(book.deposit_address("solana").len(), 44);
        assert_eq!(book.deposit_address("base").len(), 42);
    }
}
