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
    /// The name the exchange APIs take in `network`.
    pub api_name: &'static str,
    pub address: AddressFormat,
}

const fn network(id: u128, name: &'static str, api_name: &'static str, address: AddressFormat) -> Network {
    Network { id: Uuid::from_u128(id), name, api_name, address }
}

/// Networks with the ids Mesh publishes for them.
pub const NETWORKS: &[Network] = &[
    network(0xe3c7fdd8_b1fc_4e51_85ae_bb276e075611, "Ethereum", "ethereum", AddressFormat::Evm),
    network(0x7436e9d0_ba42_4d2b_b4c0_8e4e606b2c12, "Polygon", "polygon", AddressFormat::Evm),
    network(0x0291810a_5947_424d_9a59_e88bb33e999d, "Solana", "solana", AddressFormat::Base58),
    network(0xaa883b03_120d_477c_a588_37c2afd3ca71, "Base", "base", AddressFormat::Evm),
];

pub fn by_id(id: Uuid) -> Option<&'static Network> {
    NETWORKS.iter().find(|n| n.id == id)
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
