//! Server reflection: a client with no `.proto` at hand finds both services
//! and calls GetStats, over v1 (tonic's reflection client, descriptors decoded
//! on the fly) and v1alpha (grpcurl 1.8.6, which speaks only v1alpha).

use prost::Message;
use prost_types::FileDescriptorProto;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::support::{Backend, Server};

async fn ask(s: &Server, req: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(s.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(req),
    };
    let mut stream = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    stream
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

/// Raw bytes in, raw bytes out: a call made knowing only the method path.
#[derive(Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_lists_services_and_describes_get_stats() {
    let s = Server::start(Backend::Embedded, &[]).await;
    let MessageResponse::ListServicesResponse(list) =
        ask(&s, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "sessiond.v1.SessionService",
        "sessiond.v1.AdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let MessageResponse::FileDescriptorResponse(files) = ask(
        &s,
        MessageRequest::FileContainingSymbol("sessiond.v1.AdminService".into()),
    )
    .await
    else {
        panic!("not a file descriptor");
    };
    let files: Vec<FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|b| FileDescriptorProto::decode(b.as_slice()).unwrap())
        .collect();
    let admin = files
        .iter()
        .flat_map(|f| &f.service)
        .find(|s| s.name() == "AdminService")
        .unwrap();
    let method = admin
        .method
        .iter()
        .find(|m| m.name() == "GetStats")
        .unwrap();
    assert_eq!(method.input_type(), ".sessiond.v1.GetStatsRequest");
    let response = files
        .iter()
        .flat_map(|f| &f.message_type)
        .find(|m| m.name() == "GetStatsResponse")
        .unwrap();
    let instance_field = response
        .field
        .iter()
        .find(|f| f.name() == "instance_id")
        .unwrap()
        .number() as u64;

    // Call it knowing only what reflection said: an empty request message.
    let mut grpc = tonic::client::Grpc::new(s.channel().await);
    grpc.ready().await.unwrap();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/sessiond.v1.AdminService/GetStats");
    let raw = grpc
        .unary(tonic::Request::new(Vec::new()), path, RawCodec)
        .await
        .unwrap()
        .into_inner();
    // The first field on the wire is instance_id: tag (number << 3 | 2), a length, then the id.
    assert_eq!(u64::from(raw[0]), instance_field << 3 | 2);
    let id = std::str::from_utf8(&raw[2..2 + raw[1] as usize]).unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_v1alpha_lists_and_calls_get_stats() {
    let s = Server::start(Backend::Embedded, &[]).await;
    let addr = s.addr.to_string();
    let run = run_grpcurl;
    let list = run(vec!["-plaintext".into(), addr.clone(), "list".into()]).await;
    assert!(
        list.contains("sessiond.v1.SessionService") && list.contains("sessiond.v1.AdminService"),
        "{list}"
    );
    let stats = run(vec![
        "-plaintext".into(),
        addr.clone(),
        "sessiond.v1.AdminService/GetStats".into(),
    ])
    .await;
    let json: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(json["storeBackend"], "embedded");
    assert!(
        json["instanceId"].as_str().is_some_and(|s| !s.is_empty()),
        "{stats}"
    );
}

/// The operator calls, as the README shows them: reflection only, JSON in
/// and out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_runs_the_operator_calls() {
    let s = Server::start(Backend::Embedded, &[]).await;
    let mut c = s.client().await;
    for id in ["user-42/a", "user-42/b", "user-43/a"] {
        c.update_session(crate::support::set(id, &[("n", "1")]))
            .await
            .unwrap();
    }
    let held = crate::support::lock(&mut c, "user-42/a", 30_000, 0)
        .await
        .unwrap();
    let call = |method: &str, body: &str| {
        run_grpcurl(vec![
            "-plaintext".into(),
            "-d".into(),
            body.into(),
            s.addr.to_string(),
            format!("sessiond.v1.AdminService/{method}"),
        ])
    };
    let json = |text: String| serde_json::from_str::<serde_json::Value>(&text).unwrap();
    let one = r#"{"namespace":"default","session_id":"user-42/a"}"#;
    let seen = json(call("InspectSession", one).await);
    assert_eq!(seen["exists"], true);
    assert_eq!(
        seen["lock"]["fencingToken"],
        held.fencing_token.to_string(),
        "{seen}"
    );
    let forced = json(call("ForceUnlock", one).await);
    assert_eq!(forced["released"], true, "{forced}");
    let listed = json(call("ListSessions", r#"{"id_prefix":"user-42/"}"#).await);
    assert_eq!(
        listed["sessionIds"],
        serde_json::json!(["user-42/a", "user-42/b"])
    );
    let purged = json(call("PurgeSessions", r#"{"id_prefix":"user-42/"}"#).await);
    assert_eq!(purged["deleted"], "2", "{purged}");
    let left = json(call("ListSessions", r#"{"id_prefix":"user-"}"#).await);
    assert_eq!(left["sessionIds"], serde_json::json!(["user-43/a"]));
}

/// WatchSession through reflection alone, as the README shows it: the
/// snapshot, then a change with its values, as JSON lines while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_watches_a_session() {
    let s = Server::start(Backend::Embedded, &[]).await;
    let mut c = s.client().await;
    c.update_session(crate::support::set("w-curl", &[("n", "1")]))
        .await
        .unwrap();
    let mut child = std::process::Command::new(grpcurl())
        .args([
            "-plaintext",
            "-d",
            r#"{"session_id":"w-curl","include_values":true}"#,
            &s.addr.to_string(),
            "sessiond.v1.SessionService/WatchSession",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("grpcurl must be on PATH (.ci/install puts it in target/tools/bin)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for v in serde_json::Deserializer::from_reader(stdout).into_iter::<serde_json::Value>() {
            if tx.send(v.unwrap()).is_err() {
                break;
            }
        }
    });
    let within = std::time::Duration::from_secs(20);
    let first = rx.recv_timeout(within).expect("no snapshot from grpcurl");
    assert_eq!(first["version"], "1", "{first}");
    assert_eq!(
        first["snapshot"]["session"]["fields"]["n"], "MQ==",
        "{first}"
    );
    c.update_session(crate::support::set("w-curl", &[("n", "2")]))
        .await
        .unwrap();
    let second = rx.recv_timeout(within).expect("no change from grpcurl");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(second["version"], "2", "{second}");
    assert_eq!(second["changed"]["setFields"], serde_json::json!(["n"]));
    assert_eq!(second["changed"]["values"]["n"], "Mg==", "{second}");
}

/// Runs grpcurl with `args`; its stdout, once it succeeded.
async fn run_grpcurl(args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(grpcurl()).args(args).output()
    })
    .await
    .unwrap()
    .expect("grpcurl must be on PATH (.ci/install puts it in target/tools/bin)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// grpcurl from `.ci/install` (target/tools/bin), else from PATH.
fn grpcurl() -> std::path::PathBuf {
    let installed =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/grpcurl");
    if installed.exists() {
        installed
    } else {
        "grpcurl".into()
    }
}
