//! Generated types for Circle's gRPC APIs and event payloads. Nothing here is written
//! by hand except the module tree and [`codec`] (the codec the generated services and
//! clients use); the types are regenerated from `proto/` on build.

pub mod codec;

/// An API request that carries an idempotency key (its `request_id` field): a command.
/// Implemented (generated) for every such request.
pub trait CommandRequest: prost::Message + prost::Name + Clone {
    fn clear_request_id(&mut self);

    /// What the command asks, without its request id: its full type name and its
    /// encoding. Equal for a retry; different for another command sent under the same
    /// request id.
    fn content(&self) -> Vec<u8> {
        let mut request = self.clone();
        request.clear_request_id();
        let mut content = Self::full_name().into_bytes();
        content.push(0);
        content.extend(request.encode_to_vec());
        content
    }
}

include!(concat!(env!("OUT_DIR"), "/command_requests.rs"));

/// Encoded `FileDescriptorSet` of every Circle proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/circle_descriptor.bin"));

/// The method names of `service` in `package`, as the protos declare them, sorted (what
/// a service's access table must cover, row for row).
pub fn rpc_names(package: &str, service: &str) -> Result<Vec<String>, prost::DecodeError> {
    use prost::Message as _;
    let descriptors = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)?;
    let mut names: Vec<String> = descriptors
        .file
        .iter()
        .filter(|file| file.package() == package)
        .flat_map(|file| &file.service)
        .filter(|declared| declared.name() == service)
        .flat_map(|declared| &declared.method)
        .map(|method| method.name().to_owned())
        .collect();
    names.sort_unstable();
    Ok(names)
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod eventstore {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/circle.eventstore.v1.rs"));
    }
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod audit {
    pub mod events {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/circle.audit.events.v1.rs"));
        }
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
pub mod integration {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/circle.integration.v1.rs"));
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
