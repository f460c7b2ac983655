//! The schemas the handlers' types cannot give, written as JSON literals. Every answer has a wire type that
//! derives its schema (beside its handler); what is left here is input that the handlers read by hand rather
//! than through serde, so no type states its shape: each literal says why beside it. The `openapi` test pins the
//! document the server serves against `docs/openapi.json`, and the fuzzer (`scripts/fuzz.sh`) sends requests
//! built from these literals.

// A transfer destination (`toAddresses[]`): `routes::destinations` reads the list as JSON by hand, so that a
// refusal can name the element and field (`toAddresses[2].address`) and the limits are checked in one place;
// there is no serde type to derive from.
json_schema!(
    TransferDestination,
    r##"{
    "type": "object",
    "required": [
        "networkId",
        "symbol"
    ],
    "properties": {
        "networkId": {
            "type": "string",
            "format": "uuid"
        },
        "symbol": {
            "type": "string",
            "maxLength": 20
        },
        "address": {
            "type": [
                "string",
                "null"
            ],
            "maxLength": 128
        },
        "addressTag": {
            "type": [
                "string",
                "null"
            ],
            "maxLength": 128
        },
        "amount": {
            "type": [
                "number",
                "null"
            ],
            "exclusiveMinimum": 0
        }
    }
}"##
);

/// The query parameters of `GET /api/v1/transfers/managed/mesh`, which the handler reads by hand (Mesh's names
/// matched case-insensitively, lists repeated or comma-separated, which serde's query parsing cannot do):
/// `transfer_list::PARAMETERS` names the same set (tested below).
#[derive(Debug)]
pub(crate) struct MeshTransferQuery;

impl MeshTransferQuery {
    fn literal() -> serde_json::Value {
        serde_json::from_str(
            r##"[
            {
                "name": "Count",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "default": 10
                },
                "description": "Items per page (1-100, default 10)."
            },
            {
                "name": "Offset",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "integer",
                    "minimum": 0
                },
                "description": "Items to skip."
            },
            {
                "name": "Id",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "format": "uuid"
                },
                "description": "linkvault's id of the transfer (the `id` of an item; the previewId it was executed from)."
            },
            {
                "name": "ClientTransactionId",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "maxLength": 128
                },
                "description": "The transactionId the preview was made with."
            },
            {
                "name": "UserId",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "maxLength": 50
                },
                "description": "The end user whose connection sent."
            },
            {
                "name": "IntegrationIds",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "string",
                        "format": "uuid"
                    },
                    "maxItems": 100
                },
                "description": "Integration ids (as in GET /api/v1/integrations); repeat the parameter or separate with commas."
            },
            {
                "name": "Statuses",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "string",
                        "enum": [
                            "pending",
                            "succeeded",
                            "failed"
                        ]
                    },
                    "maxItems": 5
                },
                "description": "Mesh's TransferStatus values, case-insensitive."
            },
            {
                "name": "FromTimestamp",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "integer",
                    "format": "int64"
                },
                "description": "Created at or after (Unix seconds)."
            },
            {
                "name": "ToTimestamp",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "integer",
                    "format": "int64"
                },
                "description": "Created at or before (Unix seconds)."
            },
            {
                "name": "MinAmountInFiat",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "number"
                },
                "description": "At least this USD value."
            },
            {
                "name": "MaxAmountInFiat",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "number"
                },
                "description": "At most this USD value."
            },
            {
                "name": "OrderBy",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "enum": [
                        "id",
                        "clientTransferId",
                        "userId",
                        "fromType",
                        "amountInFiat",
                        "status",
                        "createdTimestamp",
                        "symbol",
                        "networkName"
                    ],
                    "default": "createdTimestamp"
                },
                "description": "Sort key (networkName sorts by network id)."
            },
            {
                "name": "Hash",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "maxLength": 256
                },
                "description": "On-chain transaction hash."
            },
            {
                "name": "SubClientId",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "string",
                    "format": "uuid"
                },
                "description": "Accepted for compatibility; linkvault has no sub-clients, so any value matches nothing."
            },
            {
                "name": "DescendingOrder",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "boolean",
                    "default": false
                },
                "description": "Newest (or largest) first."
            },
            {
                "name": "IsSandBox",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "boolean"
                },
                "description": "Accepted for compatibility and ignored."
            },
            {
                "name": "IncludeRefundInformation",
                "in": "query",
                "required": false,
                "schema": {
                    "type": "boolean"
                },
                "description": "Accepted for compatibility and ignored (linkvault makes no refunds)."
            }
        ]"##,
        )
        .unwrap_or_default()
    }
}

impl utoipa::IntoParams for MeshTransferQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        serde_json::from_value(Self::literal()).unwrap_or_default()
    }
}

/// Every literal of this file with the schema read from it.
#[cfg(test)]
pub(crate) fn literals() -> Vec<(serde_json::Value, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)> {
    use utoipa::PartialSchema as _;
    vec![(TransferDestination::literal(), TransferDestination::schema())]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

    use super::*;
    use utoipa::IntoParams as _;

    #[test]
    fn the_mesh_transfer_parameters_are_the_ones_the_handler_reads() {
        let params = MeshTransferQuery::into_params(|| None);
        assert_eq!(serde_json::to_value(&params).unwrap(), MeshTransferQuery::literal());
        let documented: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(documented, crate::routes::transfer_list::PARAMETERS);
    }
}
