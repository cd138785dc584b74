//! End-to-end tests: the services started together in one process, as `circle dev`
//! runs them, against real NATS and PostgreSQL, driven over gRPC.

mod access;
mod accountability;
mod accountability_sealing;
mod answer_names;
mod authn;
mod binaries;
mod dev;
mod disclosures;
mod edge;
mod forget;
mod fuzz;
mod halting;
mod leases;
mod limits;
mod matrix;
mod nats_users;
mod nudges;
mod ops;
mod pki;
mod proto_contract;
mod retries;
mod scale_out;
mod sessions;
mod sessions_access;
mod sessions_sealing;
mod setup;
mod shredding;
mod shutdown;
mod start_order;
mod support;
mod telemetry;
mod time_inputs;
mod timeline;
mod transport;
mod walls;
