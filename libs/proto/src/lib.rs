//! Generated types for Circle's gRPC APIs and event payloads. Nothing here is written
//! by hand except the module tree and [`codec`] (the codec the generated services and
//! clients use); the types are regenerated from `proto/` on build.

pub mod codec;

/// Encoded `FileDescriptorSet` of every Circle proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/circle_descriptor.bin"));

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod eventstore {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/circle.eventstore.v1.rs"));
    }
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod enrollment {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/circle.enrollment.v1.rs"));
    }
    pub mod events {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/circle.enrollment.events.v1.rs"));
        }
    }
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod sessions {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/circle.sessions.v1.rs"));
    }
    pub mod events {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/circle.sessions.events.v1.rs"));
        }
    }
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod accountability {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/circle.accountability.v1.rs"));
    }
    pub mod events {
        pub mod v1 {
            include!(concat!(
                env!("OUT_DIR"),
                "/circle.accountability.events.v1.rs"
            ));
        }
    }
}
