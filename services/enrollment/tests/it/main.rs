//! The enrollment service over real gRPC, against real NATS and PostgreSQL.

mod support;

mod access;
mod bad_input;
mod concurrency;
mod enroll;
mod lifecycle;
mod projections;
mod records;
