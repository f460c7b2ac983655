//! The blockchain networks managed transfers can use: Mesh's network ids (the `networkId` clients send), the
//! name shown to users, the name the exchange APIs take, and the shape a destination address must have there.

use uuid::Uuid;

/// How a destination address is written on a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFormat {
    /// `0x` followed by 40 hexadecimal digits (Ethereum and EVM chains).
    Evm,
    /// 32 to 44 base58 characters (Solana public keys).
    Base58,
}

impl AddressFormat {
    pub fn accepts(self, address: &str) -> bool {
        match self {
            AddressFormat::Evm => {
                address.len() == 42 && address.starts_with("0x") && address[2..].bytes().all(|b| b.is_ascii_hexdigit())
            }
            AddressFormat::Base58 => {
                (32..=44).contains(&address.len())
                    && address.bytes().all(|b| b.is_ascii_alphanumeric() && !matches!(b, b'0' | b'O' | b'I' | b'l'))
            }
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            AddressFormat::Evm => "0x followed by 40 hexadecimal digits",
            AddressFormat::Base58 => "32 to 44 base58 characters",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// Mesh's id of the network (stable; clients hard-code these).
    pub id: Uuid,
    /// Display name, as Mesh's `networkName`.
    pub name: &'static str,
    /// linkvault's canonical name of the network; each exchange adapter maps it to its provider's own.
    pub api_name: &'static str,
    pub address: AddressFormat,
    /// EIP-155 chain id for EVM networks, Mesh's `chainId` otherwise.
    pub chain_id: &'static str,
    pub native_symbol: &'static str,
    /// Mesh's `networkType`.
    pub network_type: &'static str,
    /// The assets linkvault moves on it (Mesh's `supportedTokens`).
    pub tokens: &'static [&'static str],
}

/// Networks with the ids Mesh publishes for them.
pub const NETWORKS: &[Network] = &[
    Network {
        id: Uuid::from_u128(0xe3c7fdd8_b1fc_4e51_85ae_bb276e075611),
        name: "Ethereum",
        api_name: "ethereum",
        address: AddressFormat::Evm,
        chain_id: "1",
        native_symbol: "ETH",
        network_type: "evm",
        tokens: &["ETH", "USDC", "USDT", "PYUSD"],
    },
    Network {
        id: Uuid::from_u128(0x7436e9d0_ba42_4d2b_b4c0_8e4e606b2c12),
        name: "Polygon",
        api_name: "polygon",
        address: AddressFormat::Evm,
        chain_id: "137",
        native_symbol: "POL",
        network_type: "evm",
        tokens: &["POL", "USDC", "USDT"],
    },
    Network {
        id: Uuid::from_u128(0x0291810a_5947_424d_9a59_e88bb33e999d),
        name: "Solana",
        api_name: "solana",
        address: AddressFormat::Base58,
        chain_id: "101",
        native_symbol: "SOL",
        network_type: "solana",
        tokens: &["SOL", "USDC", "PYUSD"],
    },
    Network {
        id: Uuid::from_u128(0xaa883b03_120d_477c_a588_37c2afd3ca71),
        name: "Base",
        api_name: "base",
        address: AddressFormat::Evm,
        chain_id: "8453",
        native_symbol: "ETH",
        network_type: "evm",
        tokens: &["ETH", "USDC"],
    },
];

pub fn by_id(id: Uuid) -> Option<&'static Network> {
    NETWORKS.iter().find(|n| n.id == id)
}

/// The network linkvault calls `api_name` (`ethereum`, …).
pub fn by_api_name(api_name: &str) -> Option<&'static Network> {
    NETWORKS.iter().find(|n| n.api_name == api_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_addresses() {
        let ethereum = by_id(Uuid::parse_str("e3c7fdd8-b1fc-4e51-85ae-bb276e075611").ok().unwrap_or_default());
        assert_eq!(ethereum.map(|n| n.api_name), Some("ethereum"));
        assert!(by_id(Uuid::nil()).is_none());
        assert!(AddressFormat::Evm.accepts("0x52908400098527886E0F7030069857D2E4169EE7"));
        assert!(!AddressFormat::Evm.accepts("0x5290840009852788"));
        assert!(!AddressFormat::Evm.accepts("0xZZ908400098527886E0F7030069857D2E4169EE7"));
        assert!(AddressFormat::Base58.accepts("7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV"));
        assert!(!AddressFormat::Base58.accepts("0OIl0OIl0OIl0OIl0OIl0OIl0OIl0OIl0"));
    }
}
