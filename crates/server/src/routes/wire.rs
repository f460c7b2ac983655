//! Small wire types the Mesh-shaped answers share: the constant `status` of a successful answer and the lists
//! Mesh's models have but linkvault never fills. The answers themselves live beside their handlers.
//!
//! Most of those answers were once built as `serde_json::Value` maps, which serialise their keys sorted: the
//! wire types keep their fields in that (JSON-name) order, so the bytes on the wire did not change when they
//! got types.

use serde::ser::{Serialize, SerializeSeq, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};

/// The `status` of an answer that can only succeed (failures are ApiResult errors instead).
#[derive(serde::Serialize, utoipa::ToSchema, Clone, Copy, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Succeeded {
    Succeeded,
}

/// A list of Mesh's model that linkvault never fills (equity, NFT and option positions): always `[]`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EmptyList;

impl Serialize for EmptyList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_seq(Some(0))?.end()
    }
}

/// [`EmptyList`]'s schema, for `#[schema(schema_with = empty_list)]`: an array with no items. Written by hand
/// because the type serialises by hand (no item type to derive from).
pub(crate) fn empty_list() -> RefOr<Schema> {
    let list =
        ArrayBuilder::new().max_items(Some(0)).description(Some("Always empty: linkvault holds no such positions"));
    RefOr::T(Schema::Array(list.build()))
}

/// A field of Mesh's model that linkvault always answers as `null` (it has nothing to put there).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AlwaysNull;

impl Serialize for AlwaysNull {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_none()
    }
}

/// [`AlwaysNull`]'s schema, for `#[schema(schema_with = always_null)]`: written by hand because the type
/// serialises by hand (utoipa has no type whose schema is `null`).
pub(crate) fn always_null() -> RefOr<Schema> {
    RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)).build()))
}

/// The one fiat currency linkvault prices in.
#[derive(serde::Serialize, utoipa::ToSchema, Clone, Copy, Debug)]
pub(crate) enum FiatCurrency {
    #[serde(rename = "USD")]
    Usd,
}

/// One serialised sample of a wire type, named by its component schema, for the schema test in
/// `routes::openapi` (an unserialisable sample is an empty text, which that test refuses).
#[cfg(test)]
pub(crate) fn sample(schema: &'static str, value: &impl Serialize) -> (&'static str, String) {
    (schema, serde_json::to_string(value).unwrap_or_default())
}
