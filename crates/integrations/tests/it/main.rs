//! Integration tests of the integrations crate over real HTTP on 127.0.0.1 (one test binary): the sandbox
//! exchanges driven through the adapters, bad upstream answers, catalog files, and conformance against an
//! independent OAuth server (oidc-provider).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

mod bad_upstream;
mod binance_contract;
mod binance_sandbox;
mod catalog_file;
mod catalog_props;
mod coinbase_contract;
mod coinbase_sandbox;
mod common;
mod oidc_conformance;
mod sandbox_flows;
mod uphold_contract;
mod uphold_sandbox;
