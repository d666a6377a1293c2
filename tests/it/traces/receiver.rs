//! A small OTLP/gRPC receiver: the collector's TraceService on a free port,
//! keeping every span it is sent.

use std::net::SocketAddr;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;

use crate::support::free_port;

#[derive(Default)]
struct Received {
    /// Export requests, empty ones included.
    requests: usize,
    spans: Vec<Span>,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = self.0.lock();
        received.requests += 1;
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                received.spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The receiver, serving until it is dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    collector: Collector,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve(addr)
                .await
                .unwrap();
        });
        // Serving once a connection is accepted.
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Receiver {
            addr,
            collector,
            task,
        }
    }

    /// `--otlp-endpoint` for it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.collector.0.lock().requests
    }

    pub fn spans(&self) -> Vec<Span> {
        self.collector.0.lock().spans.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A string or integer attribute of `span`, as text.
pub fn attribute(span: &Span, key: &str) -> Option<String> {
    let kv = span.attributes.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// The names of `span`'s events, in order.
pub fn events(span: &Span) -> Vec<String> {
    span.events.iter().map(|e| e.name.clone()).collect()
}
