//! Isolation and scope: may this caller use this connection for this operation?

use crate::identity::{ClientId, Scope};

/// The kind of call being made with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Status reads, holdings, balances: any key of the owning client.
    Read,
    /// Transfers and other writes: needs a write key *and* a write-scoped connection.
    Write,
    /// Removing the connection: the owning client; a read key only a read-scoped connection (a connection
    /// made with a write key is the app's write capability, which a read key must not be able to destroy).
    Remove,
}

/// Why a caller may not use a connection. `NotFound` is deliberately the answer for another client's
/// connection, so that a tokenId's existence is never revealed across clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessDenied {
    NotFound,
    /// A read key called a write operation (HTTP 403, decided before the connection is even loaded), or tried
    /// to remove a write-scoped connection.
    KeyScopeTooLow,
    /// A write key used a read-scoped tokenId (`tokenScopeMismatch`).
    TokenScopeMismatch,
}

/// The one rule every tokenId use goes through.
pub fn authorize_token_use(
    caller_client: ClientId,
    caller_scope: Scope,
    owner_client: ClientId,
    token_scope: Scope,
    operation: Operation,
) -> Result<(), AccessDenied> {
    if caller_client != owner_client {
        return Err(AccessDenied::NotFound);
    }
    match operation {
        Operation::Read => Ok(()),
        Operation::Remove if caller_scope != Scope::Write && token_scope == Scope::Write => {
            Err(AccessDenied::KeyScopeTooLow)
        }
        Operation::Remove => Ok(()),
        Operation::Write if caller_scope != Scope::Write => Err(AccessDenied::KeyScopeTooLow),
        Operation::Write if token_scope != Scope::Write => Err(AccessDenied::TokenScopeMismatch),
        Operation::Write => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_combination() {
        let me = ClientId::new_random();
        let other = ClientId::new_random();
        for caller_scope in [Scope::Read, Scope::Write] {
            for token_scope in [Scope::Read, Scope::Write] {
                for op in [Operation::Read, Operation::Write, Operation::Remove] {
                    assert_eq!(
                        authorize_token_use(other, caller_scope, me, token_scope, op),
                        Err(AccessDenied::NotFound)
                    );
                    let own = authorize_token_use(me, caller_scope, me, token_scope, op);
                    let expected = match (op, caller_scope, token_scope) {
                        (Operation::Write, Scope::Read, _) | (Operation::Remove, Scope::Read, Scope::Write) => {
                            Err(AccessDenied::KeyScopeTooLow)
                        }
                        (Operation::Write, Scope::Write, Scope::Read) => Err(AccessDenied::TokenScopeMismatch),
                        _ => Ok(()),
                    };
                    assert_eq!(own, expected, "{caller_scope:?} key, {token_scope:?} token, {op:?}");
                }
            }
        }
    }
}
