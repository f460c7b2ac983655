//! Transfer destinations parsed from hostile JSON: Mesh's `toAddresses` entries (inside a link token's
//! `transferOptions`, and at `transfers/managed/configure`) and the rest of `transferOptions`. Parsed once into
//! typed values, each refusal naming the exact field path (`transferOptions.toAddresses[0].address`) and how to
//! fix it, so the Link page and the configure core only ever see networks linkvault knows, symbols those
//! networks carry and addresses of the network's shape.

use linkvault_integrations::networks::{self, Network};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::api_result::ApiError;
use crate::routes::transfers::{MAX_ADDRESS_CHARS, MAX_SYMBOL_CHARS, MAX_TRANSACTION_ID_CHARS};

/// More destinations than this is a mistake (Mesh's page shows one choice per asset and network).
pub(crate) const MAX_DESTINATIONS: usize = 50;
const MAX_DESCRIPTION_CHARS: usize = 256;
/// Mesh's `transferType` values.
const TRANSFER_TYPES: &[&str] = &["deposit", "payment", "onramp", "fiatOnRamp", "fiatOffRamp"];

/// Where a transfer may go: one `toAddresses` entry, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Destination {
    pub network_id: Uuid,
    pub network_name: String,
    pub symbol: String,
    /// Always present in a link token's options; optional at configure (eligibility only).
    pub address: Option<String>,
    pub address_tag: Option<String>,
    /// The amount to send, in the symbol, when the app fixed it.
    pub amount: Option<f64>,
}

impl TransferOptions {
    /// The options a Link session stored at `POST /api/v1/linktoken` (already validated there).
    pub(crate) fn stored(text: Option<&str>) -> Option<TransferOptions> {
        text.and_then(|t| serde_json::from_str(t).ok())
    }
}

impl Destination {
    pub(crate) fn network(&self) -> Option<&'static Network> {
        networks::by_id(self.network_id)
    }
}

/// A link token's `transferOptions`, validated; what the Link session answers (Mesh's field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TransferOptions {
    pub to_addresses: Vec<Destination>,
    pub amount_in_fiat: Option<f64>,
    pub transaction_id: Option<String>,
    pub transfer_type: Option<String>,
    pub is_inclusive_fee_enabled: bool,
    pub client_fee: Option<f64>,
}

fn at(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn text<'v>(obj: &'v Map<String, Value>, path: &str, key: &str) -> Result<Option<&'v str>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(_) => Err(ApiError::invalid_field(&at(path, key), "must be a string")),
    }
}

fn bounded_text(obj: &Map<String, Value>, path: &str, key: &str, max_chars: usize) -> Result<Option<String>, ApiError> {
    let Some(value) = text(obj, path, key)? else { return Ok(None) };
    crate::routes::transfers::check_text(&at(path, key), value, max_chars)?;
    Ok(Some(value.to_owned()))
}

fn number(obj: &Map<String, Value>, path: &str, key: &str) -> Result<Option<f64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().map(Some).ok_or_else(|| ApiError::invalid_field(&at(path, key), "must be a number"))
        }
        Some(_) => Err(ApiError::invalid_field(&at(path, key), "must be a number")),
    }
}

fn amount(obj: &Map<String, Value>, path: &str, key: &str) -> Result<Option<f64>, ApiError> {
    number(obj, path, key)?.map(|v| crate::routes::transfers::check_amount(&at(path, key), v)).transpose()
}

/// The network a `networkId` names, among those linkvault sends over.
pub(crate) fn known_network(field: &str, raw: &str) -> Result<&'static Network, ApiError> {
    let id = Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid_field(field, "must be a UUID"))?;
    networks::by_id(id).ok_or_else(|| {
        let names: Vec<&str> = networks::NETWORKS.iter().map(|n| n.name).collect();
        ApiError::invalid_field(
            field,
            format!(
                "is not a network linkvault sends over ({}; GET /api/v1/transfers/managed/networks lists their ids)",
                names.join(", ")
            ),
        )
    })
}

/// An optional `networkId` (absent or blank: none).
pub(crate) fn optional_network(field: &str, raw: Option<&str>) -> Result<Option<&'static Network>, ApiError> {
    raw.map(str::trim).filter(|s| !s.is_empty()).map(|raw| known_network(field, raw)).transpose()
}

/// An optional symbol (absent or blank: none), one `network` carries when a network is given.
pub(crate) fn optional_symbol(
    field: &str,
    raw: Option<&str>,
    network: Option<&Network>,
) -> Result<Option<String>, ApiError> {
    raw.map(str::trim).filter(|s| !s.is_empty()).map(|raw| known_symbol(field, raw, network)).transpose()
}

/// A ticker symbol (upper-cased), one of those `network` carries when a network is given.
pub(crate) fn known_symbol(field: &str, raw: &str, network: Option<&Network>) -> Result<String, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > MAX_SYMBOL_CHARS || !raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::invalid_field(field, "must be a ticker symbol such as ETH or USDC"));
    }
    let symbol = raw.to_ascii_uppercase();
    if let Some(network) = network
        && !network.tokens.contains(&symbol.as_str())
    {
        return Err(ApiError::invalid_field(
            field,
            format!("{symbol} is not a token linkvault moves on {} ({})", network.name, network.tokens.join(", ")),
        ));
    }
    Ok(symbol)
}

/// One `toAddresses` entry at `path` (`transferOptions.toAddresses[0]`).
fn destination(value: &Value, path: &str, require_address: bool) -> Result<Destination, ApiError> {
    let Value::Object(obj) = value else { return Err(ApiError::invalid_field(path, "must be an object")) };
    let network_field = at(path, "networkId");
    let raw_network = text(obj, path, "networkId")?.ok_or_else(|| ApiError::missing_field(&network_field))?;
    let network = known_network(&network_field, raw_network)?;
    let symbol_field = at(path, "symbol");
    let raw_symbol = text(obj, path, "symbol")?.ok_or_else(|| ApiError::missing_field(&symbol_field))?;
    let symbol = known_symbol(&symbol_field, raw_symbol, Some(network))?;
    let address_field = at(path, "address");
    let address = bounded_text(obj, path, "address", MAX_ADDRESS_CHARS)?;
    match &address {
        None if require_address => return Err(ApiError::missing_field(&address_field)),
        Some(a) if !network.address.accepts(a) => {
            return Err(ApiError::invalid_field(
                &address_field,
                format!("is not a {} address ({})", network.name, network.address.describe()),
            ));
        }
        _ => {}
    }
    Ok(Destination {
        network_id: network.id,
        network_name: network.name.to_owned(),
        symbol,
        address,
        address_tag: bounded_text(obj, path, "addressTag", MAX_ADDRESS_CHARS)?,
        amount: amount(obj, path, "amount")?,
    })
}

/// A `toAddresses` array at `path`; absent or null is an empty list.
pub(crate) fn destinations(
    value: Option<&Value>,
    path: &str,
    require_address: bool,
) -> Result<Vec<Destination>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::invalid_field(path, "must be an array of destinations")),
    };
    if items.len() > MAX_DESTINATIONS {
        return Err(ApiError::invalid_field(path, format!("lists more than {MAX_DESTINATIONS} destinations")));
    }
    let mut parsed: Vec<Destination> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let d = destination(item, &path, require_address)?;
        if parsed.iter().any(|p| p.network_id == d.network_id && p.symbol == d.symbol) {
            return Err(ApiError::invalid_field(
                &path,
                format!("{} on {} is listed twice; list each asset and network once", d.symbol, d.network_name),
            ));
        }
        parsed.push(d);
    }
    Ok(parsed)
}

/// A link token's `transferOptions` (JSON object), validated; `path` is `transferOptions`.
pub(crate) fn transfer_options(path: &str, value: &Value) -> Result<TransferOptions, ApiError> {
    let Value::Object(obj) = value else { return Err(ApiError::invalid_field(path, "must be an object")) };
    let to_addresses = destinations(obj.get("toAddresses"), &at(path, "toAddresses"), true)?;
    let transfer_type = match text(obj, path, "transferType")? {
        None => None,
        Some(t) => match TRANSFER_TYPES.iter().find(|known| **known == t) {
            Some(known) => Some((*known).to_owned()),
            None => {
                return Err(ApiError::invalid_field(
                    &at(path, "transferType"),
                    format!("must be one of {}", TRANSFER_TYPES.join(", ")),
                ));
            }
        },
    };
    let client_fee = match number(obj, path, "clientFee")? {
        Some(fee) if !(0.0..=1.0).contains(&fee) => {
            return Err(ApiError::invalid_field(
                &at(path, "clientFee"),
                "must be a ratio between 0 and 1 (0.025 is 2.5%)",
            ));
        }
        fee => fee,
    };
    let is_inclusive_fee_enabled = match obj.get("isInclusiveFeeEnabled") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid_field(&at(path, "isInclusiveFeeEnabled"), "must be true or false")),
    };
    // Accepted for compatibility and bounded, not used.
    bounded_text(obj, path, "description", MAX_DESCRIPTION_CHARS)?;
    Ok(TransferOptions {
        to_addresses,
        amount_in_fiat: amount(obj, path, "amountInFiat")?,
        transaction_id: bounded_text(obj, path, "transactionId", MAX_TRANSACTION_ID_CHARS)?,
        transfer_type,
        is_inclusive_fee_enabled,
        client_fee,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ETHEREUM: &str = "e3c7fdd8-b1fc-4e51-85ae-bb276e075611";
    const ADDRESS: &str = "0x52908400098527886E0F7030069857D2E4169EE7";

    fn field_of(e: &ApiError) -> String {
        e.error_data.as_ref().and_then(|d| d["field"].as_str()).unwrap_or_default().to_owned()
    }

    #[test]
    fn options_are_parsed_and_each_refusal_names_its_field() {
        let ok = transfer_options(
            "transferOptions",
            &json!({"toAddresses": [{"networkId": ETHEREUM, "symbol": "usdc", "address": ADDRESS, "amount": 5}],
                    "transactionId": "order-1", "transferType": "deposit", "clientFee": 0.01}),
        );
        let ok = ok.ok().unwrap_or_else(|| panic!("valid options refused"));
        assert_eq!(ok.to_addresses[0].symbol, "USDC");
        assert_eq!(ok.to_addresses[0].network_name, "Ethereum");
        assert_eq!(ok.to_addresses[0].amount, Some(5.0));

        let cases = [
            (json!({"toAddresses": "x"}), "transferOptions.toAddresses"),
            (
                json!({"toAddresses": [{"symbol": "ETH", "address": ADDRESS}]}),
                "transferOptions.toAddresses[0].networkId",
            ),
            (
                json!({"toAddresses": [{"networkId": "00000000-0000-4000-8000-000000000000", "symbol": "ETH", "address": ADDRESS}]}),
                "transferOptions.toAddresses[0].networkId",
            ),
            (
                json!({"toAddresses": [{"networkId": ETHEREUM, "symbol": "SOL", "address": ADDRESS}]}),
                "transferOptions.toAddresses[0].symbol",
            ),
            (
                json!({"toAddresses": [{"networkId": ETHEREUM, "symbol": "ETH", "address": "0x12"}]}),
                "transferOptions.toAddresses[0].address",
            ),
            (
                json!({"toAddresses": [{"networkId": ETHEREUM, "symbol": "ETH"}]}),
                "transferOptions.toAddresses[0].address",
            ),
            (
                json!({"toAddresses": [{"networkId": ETHEREUM, "symbol": "ETH", "address": ADDRESS, "amount": -1}]}),
                "transferOptions.toAddresses[0].amount",
            ),
            (json!({"amountInFiat": 0}), "transferOptions.amountInFiat"),
            (json!({"amountInFiat": 1e20}), "transferOptions.amountInFiat"),
            (json!({"transactionId": "x".repeat(129)}), "transferOptions.transactionId"),
            (json!({"transferType": "gift"}), "transferOptions.transferType"),
            (json!({"clientFee": 2}), "transferOptions.clientFee"),
            (json!({"isInclusiveFeeEnabled": "yes"}), "transferOptions.isInclusiveFeeEnabled"),
        ];
        for (options, field) in cases {
            let refused = transfer_options("transferOptions", &options).err();
            assert_eq!(refused.as_ref().map(field_of).as_deref(), Some(field), "{options}");
        }
        let twice = json!({"toAddresses": [
            {"networkId": ETHEREUM, "symbol": "ETH", "address": ADDRESS},
            {"networkId": ETHEREUM, "symbol": "eth", "address": ADDRESS},
        ]});
        let refused = transfer_options("transferOptions", &twice).err();
        assert_eq!(refused.as_ref().map(field_of).as_deref(), Some("transferOptions.toAddresses[1]"));
    }
}
