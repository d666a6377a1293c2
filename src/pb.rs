//! Code generated from `proto/sessiond/v1/*.proto`, and the encoded file
//! descriptor set that server reflection serves.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("sessiond.v1");

pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sessiond_descriptor");
