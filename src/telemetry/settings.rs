//! The OpenTelemetry settings, read from the standard `OTEL_*` environment variables.
//!
//! Trace export is off unless an endpoint is given (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended), and `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` turn it off whatever else is set. Only OTLP over HTTP with
//! protobuf bodies is spoken. A value that cannot be used stops start-up with a message naming
//! the variable; the message never quotes a header value, which may be a collector's API key.

use std::fmt;

use http::{HeaderName, HeaderValue};
use opentelemetry_sdk::trace::Sampler;
use url::Url;

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = "switchboard";

/// The path appended to `OTEL_EXPORTER_OTLP_ENDPOINT` for traces.
const TRACES_PATH: &str = "v1/traces";

/// Where and how to export traces.
#[derive(Clone)]
pub struct OtelSettings {
    /// The full URL spans are posted to.
    pub endpoint: Url,
    /// Headers sent with every export (their values may be credentials).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `service.name` of the resource.
    pub service_name: String,
    /// The other resource attributes, in the order given.
    pub resource: Vec<(String, String)>,
    /// Which traces are recorded and exported.
    pub sampler: Sampler,
}

impl fmt::Debug for OtelSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelSettings")
            .field("endpoint", &self.endpoint.as_str())
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .field("resource", &self.resource)
            .field("sampler", &self.sampler)
            .finish()
    }
}

/// A variable whose value cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {variable}: {reason}")]
pub struct SettingsError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong with it, without quoting secrets.
    pub reason: String,
}

fn invalid(variable: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        variable,
        reason: reason.into(),
    }
}

impl OtelSettings {
    /// Read the settings through `var` (the process environment in production). `Ok(None)`
    /// means trace export is off.
    pub fn from_env(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtelSettings>, SettingsError> {
        // The specification treats an empty value as unset.
        let var = |name: &str| var(name).filter(|value| !value.trim().is_empty());

        if parse_bool("OTEL_SDK_DISABLED", var("OTEL_SDK_DISABLED"))? {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(_) => {
                return Err(invalid(
                    "OTEL_TRACES_EXPORTER",
                    "only otlp and none are supported",
                ));
            }
        }
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _) => parse_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url)?,
            (None, Some(base)) => {
                let mut url = parse_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", &base)?;
                let path = url.path().trim_end_matches('/').to_owned();
                url.set_path(&format!("{path}/{TRACES_PATH}"));
                url
            }
            (None, None) => return Ok(None),
        };
        for variable in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = var(variable)
                && protocol.trim() != "http/protobuf"
            {
                return Err(invalid(
                    variable,
                    "only http/protobuf is supported (not grpc or http/json)",
                ));
            }
        }
        let headers = match (
            var("OTEL_EXPORTER_OTLP_TRACES_HEADERS"),
            var("OTEL_EXPORTER_OTLP_HEADERS"),
        ) {
            (Some(list), _) => parse_headers("OTEL_EXPORTER_OTLP_TRACES_HEADERS", &list)?,
            (None, Some(list)) => parse_headers("OTEL_EXPORTER_OTLP_HEADERS", &list)?,
            (None, None) => Vec::new(),
        };
        let mut resource = match var("OTEL_RESOURCE_ATTRIBUTES") {
            Some(list) => parse_pairs("OTEL_RESOURCE_ATTRIBUTES", &list)?,
            None => Vec::new(),
        };
        let named = resource
            .iter()
            .position(|(key, _)| key == "service.name")
            .map(|at| resource.remove(at).1);
        let service_name = var("OTEL_SERVICE_NAME")
            .map(|name| name.trim().to_owned())
            .or(named)
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        let sampler = parse_sampler(
            var("OTEL_TRACES_SAMPLER").as_deref(),
            var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )?;
        Ok(Some(OtelSettings {
            endpoint,
            headers,
            service_name,
            resource,
            sampler,
        }))
    }
}

fn parse_bool(variable: &'static str, value: Option<String>) -> Result<bool, SettingsError> {
    match value.as_deref().map(str::trim) {
        None => Ok(false),
        Some(value) if value.eq_ignore_ascii_case("true") => Ok(true),
        Some(value) if value.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(invalid(variable, "expected true or false")),
    }
}

/// An `http` or `https` URL without user name or password. Its host is the one origin the
/// exporter's client may reach.
fn parse_endpoint(variable: &'static str, value: &str) -> Result<Url, SettingsError> {
    let url =
        Url::parse(value.trim()).map_err(|err| invalid(variable, format!("not a URL ({err})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(variable, "expected an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            variable,
            "credentials in the URL are not allowed; send them with OTEL_EXPORTER_OTLP_HEADERS",
        ));
    }
    if url.host().is_none() {
        return Err(invalid(variable, "the URL has no host"));
    }
    Ok(url)
}

/// `key=value` pairs separated by commas, values percent-decoded (W3C Baggage format, as the
/// specification asks for headers and resource attributes). Errors name the position of the
/// pair, never its value.
fn parse_pairs(variable: &'static str, list: &str) -> Result<Vec<(String, String)>, SettingsError> {
    let mut pairs = Vec::new();
    for (index, item) in list.split(',').enumerate() {
        let position = index.saturating_add(1);
        if item.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = item.split_once('=') else {
            return Err(invalid(
                variable,
                format!("entry {position} is not key=value"),
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(invalid(variable, format!("entry {position} has no key")));
        }
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| {
                invalid(
                    variable,
                    format!("the value of entry {position} is not UTF-8 once decoded"),
                )
            })?;
        pairs.push((key.to_owned(), value.into_owned()));
    }
    Ok(pairs)
}

fn parse_headers(
    variable: &'static str,
    list: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, SettingsError> {
    parse_pairs(variable, list)?
        .into_iter()
        .enumerate()
        .map(|(index, (name, value))| {
            let position = index.saturating_add(1);
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                invalid(
                    variable,
                    format!("header {position} does not have a valid name"),
                )
            })?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                invalid(
                    variable,
                    format!("the value of header {name} is not a valid header value"),
                )
            })?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

fn parse_sampler(name: Option<&str>, arg: Option<&str>) -> Result<Sampler, SettingsError> {
    let ratio = || -> Result<f64, SettingsError> {
        let Some(arg) = arg else { return Ok(1.0) };
        arg.trim()
            .parse::<f64>()
            .ok()
            .filter(|ratio| (0.0..=1.0).contains(ratio))
            .ok_or_else(|| {
                invalid(
                    "OTEL_TRACES_SAMPLER_ARG",
                    "expected a ratio from 0 to 1, such as 0.25",
                )
            })
    };
    Ok(
        match name.map(str::trim).unwrap_or("parentbased_always_on") {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
            "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            "parentbased_traceidratio" => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?)))
            }
            _ => {
                return Err(invalid(
                    "OTEL_TRACES_SAMPLER",
                    "expected always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio",
                ));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<OtelSettings>, SettingsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OtelSettings::from_env(|name| vars.get(name).cloned())
    }

    fn on(vars: &[(&str, &str)]) -> OtelSettings {
        settings(vars).unwrap().expect("trace export should be on")
    }

    fn error(vars: &[(&str, &str)]) -> SettingsError {
        settings(vars).expect_err("the settings should be refused")
    }

    const BASE: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert!(settings(&[]).unwrap().is_none());
        assert!(
            settings(&[
                ("OTEL_SERVICE_NAME", "x"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "")
            ])
            .unwrap()
            .is_none()
        );
        assert!(
            settings(&[BASE, ("OTEL_SDK_DISABLED", "TRUE")])
                .unwrap()
                .is_none()
        );
        assert!(
            settings(&[BASE, ("OTEL_TRACES_EXPORTER", "none")])
                .unwrap()
                .is_none()
        );
        assert!(
            settings(&[BASE, ("OTEL_SDK_DISABLED", "false")])
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn the_traces_path_is_appended_to_the_base_endpoint_only() {
        let cases = [
            (vec![BASE], "http://127.0.0.1:4318/v1/traces"),
            (
                vec![(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "https://collector.internal/otlp/",
                )],
                "https://collector.internal/otlp/v1/traces",
            ),
            (
                vec![(
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://localhost:9999/custom",
                )],
                "http://localhost:9999/custom",
            ),
            (
                vec![
                    BASE,
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://localhost:1/t"),
                ],
                "http://localhost:1/t",
            ),
        ];
        for (vars, expected) in cases {
            assert_eq!(on(&vars).endpoint.as_str(), expected, "{vars:?}");
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: [(&[(&str, &str)], &str); 10] = [
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://user:pw@collector/")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                &[BASE, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                &[BASE, ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            ),
            (
                &[BASE, ("OTEL_TRACES_SAMPLER", "jaeger_remote")],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                &[
                    BASE,
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (&[BASE, ("OTEL_SDK_DISABLED", "maybe")], "OTEL_SDK_DISABLED"),
            (
                &[BASE, ("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                &[BASE, ("OTEL_RESOURCE_ATTRIBUTES", "deployment")],
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
        ];
        for (vars, variable) in cases {
            let err = error(vars);
            assert_eq!(err.variable, variable, "{vars:?}");
            assert!(err.to_string().contains(variable), "{err}");
        }
    }

    #[test]
    fn headers_are_decoded_and_never_quoted_in_errors_or_debug() {
        let settings = on(&[
            BASE,
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=secret%20key-5e1f, x-team = blue",
            ),
        ]);
        let headers: Vec<(&str, &[u8])> = settings
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        assert_eq!(
            headers,
            [("api-key", &b"secret key-5e1f"[..]), ("x-team", b"blue")]
        );
        assert!(
            settings
                .headers
                .iter()
                .all(|(_, value)| value.is_sensitive())
        );
        let debug = format!("{settings:?}");
        assert!(
            debug.contains("api-key") && !debug.contains("5e1f"),
            "{debug}"
        );

        // The traces variable wins over the general one.
        let settings = on(&[
            BASE,
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
        ]);
        assert_eq!(settings.headers.len(), 1);
        assert_eq!(settings.headers[0].0.as_str(), "b");

        let err = error(&[
            BASE,
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=secret%0A-9c4d"),
        ]);
        assert_eq!(err.variable, "OTEL_EXPORTER_OTLP_HEADERS");
        assert!(!err.to_string().contains("9c4d"), "{err}");
        let err = error(&[BASE, ("OTEL_EXPORTER_OTLP_HEADERS", "bad name=secret-77aa")]);
        assert!(!err.to_string().contains("77aa"), "{err}");
    }

    #[test]
    fn service_name_and_resource_attributes() {
        let settings = on(&[BASE]);
        assert_eq!(settings.service_name, "switchboard");
        assert!(settings.resource.is_empty());

        let settings = on(&[
            BASE,
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attributes,deployment.environment.name=prod%2Ceu",
            ),
        ]);
        assert_eq!(settings.service_name, "from-attributes");
        assert_eq!(
            settings.resource,
            [(
                "deployment.environment.name".to_owned(),
                "prod,eu".to_owned()
            )]
        );

        let settings = on(&[
            BASE,
            ("OTEL_SERVICE_NAME", "edge"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=other"),
        ]);
        assert_eq!(settings.service_name, "edge");
    }

    #[test]
    fn samplers() {
        let sampler = |vars: &[(&str, &str)]| {
            let mut all = vec![BASE];
            all.extend_from_slice(vars);
            format!("{:?}", on(&all).sampler)
        };
        assert_eq!(sampler(&[]), "ParentBased(AlwaysOn)");
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "always_off")]),
            "AlwaysOff"
        );
        assert_eq!(
            sampler(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ]),
            "ParentBased(TraceIdRatioBased(0.25))"
        );
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER", "traceidratio")]),
            "TraceIdRatioBased(1.0)"
        );
    }
}
