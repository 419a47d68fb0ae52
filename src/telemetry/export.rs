//! The OTLP exporter: spans batched on the tokio runtime and posted as protobuf over HTTP
//! through a guarded client that reaches only the configured collector
//! ([`GuardedClient::for_collector`]).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use url::Url;

use super::settings::OtelSettings;
use crate::net::{ClientOptions, GuardedClient, NetError, read_body_capped};

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer that is read (it is a small protobuf message).
const RESPONSE_LIMIT: usize = 64 << 10;

/// The exporter's HTTP client: the guarded client confined to the collector's origin.
#[derive(Clone, Debug)]
pub(super) struct CollectorClient {
    http: GuardedClient,
}

impl CollectorClient {
    pub(super) fn new(endpoint: &Url) -> Result<Self, NetError> {
        let http = GuardedClient::for_collector(
            endpoint,
            ClientOptions {
                timeout: EXPORT_TIMEOUT,
                ..ClientOptions::default()
            },
        )?;
        Ok(CollectorClient { http })
    }
}

#[async_trait]
impl HttpClient for CollectorClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let url = Url::parse(&parts.uri.to_string())
            .map_err(|_| NetError::InvalidUrl("the collector URL is not valid".to_owned()))?;
        let request = self
            .http
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body);
        let response = self.http.send(request).await?;
        let status = response.status();
        if !status.is_success() {
            // The status only: a collector's error body may quote what was sent.
            tracing::warn!(
                status = status.as_u16(),
                "the trace collector refused spans"
            );
        }
        let headers = response.headers().clone();
        let body = read_body_capped(response, RESPONSE_LIMIT).await?;
        let mut answer = Response::builder().status(status).body(body)?;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The collector's endpoint is refused by the outbound rules.
    #[error("the trace collector endpoint is refused: {0}")]
    Endpoint(#[from] NetError),
    /// The exporter refused its configuration.
    #[error("the trace exporter could not be built: {0}")]
    Exporter(String),
}

/// Build the tracer provider: batch export to the collector, the configured sampler and the
/// resource (`service.name` and `OTEL_RESOURCE_ATTRIBUTES`). Must run inside the runtime.
pub(super) fn tracer_provider(settings: &OtelSettings) -> Result<SdkTracerProvider, ExportError> {
    let client = CollectorClient::new(&settings.endpoint)?;
    let headers: HashMap<String, String> = settings
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(settings.endpoint.as_str())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT)
        .with_headers(headers)
        .build()
        // The builder's errors name the endpoint at most, never a header value.
        .map_err(|err| ExportError::Exporter(err.to_string()))?;
    let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
    let resource = Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attributes(
            settings
                .resource
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(settings.sampler.clone())
        .with_resource(resource)
        .build())
}
