//! Request ids of tool calls that are never used twice.
//!
//! rmcp numbers a connection's requests from zero, so a session opened after another (the pool
//! replaced it, another replica continues an input request, a call is repeated after its
//! stream broke) sends its first call under an id an earlier call to the same server already
//! had. The specification wants every retry to be a new request with a new id, so
//! [`FreshCallIds`] wraps a transport and sends each `tools/call` under an id of its own, drawn
//! at random (`call-` and 32 hex digits), restoring rmcp's id on everything that comes back:
//! the response or error, and the stream a server's own request arrived on. A client
//! `notifications/cancelled` for a call names the call's id on the wire too.
//!
//! Invariants:
//! - Only `tools/call` requests are renamed; other requests (discovery, listings, the listen
//!   stream whose notifications name its id) keep rmcp's ids.
//! - An entry lives from the call's send to its answer; calls whose answer never comes stay
//!   until the transport is dropped with its session, so the table is bounded by the calls
//!   a session has in flight.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rmcp::RoleClient;
use rmcp::model::{ClientNotification, ClientRequest, GetExtensions, JsonRpcMessage, RequestId};
use rmcp::service::{InboundStreamOrigin, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;

/// A tool call's request id never used before: `call-` and 32 random hex digits.
pub(super) fn fresh_call_id() -> RequestId {
    RequestId::String(format!("call-{}", uuid::Uuid::new_v4().simple()).into())
}

/// A transport whose tool calls go out under fresh ids.
pub(super) struct FreshCallIds<T> {
    inner: T,
    ids: Arc<Mutex<Renamed>>,
}

/// The calls in flight: the wire id by rmcp's, and rmcp's by the wire id.
#[derive(Default)]
struct Renamed {
    wire: HashMap<RequestId, RequestId>,
    local: HashMap<RequestId, RequestId>,
}

impl<T> FreshCallIds<T> {
    pub(super) fn new(inner: T) -> Self {
        FreshCallIds {
            inner,
            ids: Arc::default(),
        }
    }

    fn ids(&self) -> MutexGuard<'_, Renamed> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rename an outgoing call, or point a cancellation at the renamed call.
    fn outgoing(&self, message: &mut TxJsonRpcMessage<RoleClient>) {
        match message {
            JsonRpcMessage::Request(request)
                if matches!(request.request, ClientRequest::CallToolRequest(_)) =>
            {
                let wire = fresh_call_id();
                let mut ids = self.ids();
                ids.wire.insert(request.id.clone(), wire.clone());
                ids.local
                    .insert(wire.clone(), std::mem::replace(&mut request.id, wire));
            }
            JsonRpcMessage::Notification(notification) => {
                if let ClientNotification::CancelledNotification(cancelled) =
                    &mut notification.notification
                    && let Some(id) = cancelled.params.request_id.as_mut()
                    && let Some(wire) = self.ids().wire.get(id)
                {
                    *id = wire.clone();
                }
            }
            _ => {}
        }
    }

    /// Give an incoming answer, or a server request that came on a call's stream, rmcp's id.
    fn incoming(&self, message: &mut RxJsonRpcMessage<RoleClient>) {
        let answered = match message {
            JsonRpcMessage::Response(response) => Some(&mut response.id),
            JsonRpcMessage::Error(error) => error.id.as_mut(),
            JsonRpcMessage::Request(request) => {
                let extensions = request.request.extensions_mut();
                if let Some(InboundStreamOrigin::OutboundRequest(id)) =
                    extensions.get_mut::<InboundStreamOrigin>()
                    && let Some(local) = self.ids().local.get(id)
                {
                    *id = local.clone();
                }
                None
            }
            JsonRpcMessage::Notification(_) => None,
        };
        if let Some(id) = answered {
            let mut ids = self.ids();
            if let Some(local) = ids.local.remove(id) {
                ids.wire.remove(&local);
                *id = local;
            }
        }
    }
}

impl<T> Transport<RoleClient> for FreshCallIds<T>
where
    T: Transport<RoleClient>,
{
    type Error = T::Error;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        mut item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.outgoing(&mut item);
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let mut message = self.inner.receive().await?;
        self.incoming(&mut message);
        Some(message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{
        CallToolRequest, CallToolRequestParams, CancelledNotification, CancelledNotificationParam,
        ClientRequest, ErrorData, JsonRpcError, JsonRpcResponse, JsonRpcVersion2_0, ServerResult,
    };

    use super::*;

    struct Nowhere;

    fn call(id: i64) -> TxJsonRpcMessage<RoleClient> {
        JsonRpcMessage::request(
            ClientRequest::CallToolRequest(CallToolRequest::new(CallToolRequestParams::new(
                "echo",
            ))),
            RequestId::Number(id),
        )
    }

    fn wire_id(message: &TxJsonRpcMessage<RoleClient>) -> RequestId {
        match message {
            JsonRpcMessage::Request(request) => request.id.clone(),
            _ => panic!("a request"),
        }
    }

    #[test]
    fn each_call_goes_out_under_its_own_id_and_comes_back_under_rmcps() {
        let ids = FreshCallIds::new(Nowhere);
        let (mut first, mut again) = (call(1), call(1));
        ids.outgoing(&mut first);
        ids.outgoing(&mut again);
        let (wire1, wire2) = (wire_id(&first), wire_id(&again));
        assert_ne!(wire1, RequestId::Number(1));
        assert_ne!(wire1, wire2, "the same local id twice, two wire ids");

        let mut cancel: TxJsonRpcMessage<RoleClient> = JsonRpcMessage::notification(
            ClientNotification::CancelledNotification(CancelledNotification::new(
                CancelledNotificationParam::new(Some(RequestId::Number(1)), None),
            )),
        );
        ids.outgoing(&mut cancel);
        let JsonRpcMessage::Notification(notification) = &cancel else {
            panic!("a notification");
        };
        let ClientNotification::CancelledNotification(cancelled) = &notification.notification
        else {
            panic!("a cancellation");
        };
        assert!(
            cancelled.params.request_id == Some(wire1.clone())
                || cancelled.params.request_id == Some(wire2.clone()),
            "a cancellation names the call as sent"
        );

        let mut answer: RxJsonRpcMessage<RoleClient> = JsonRpcMessage::Response(JsonRpcResponse {
            jsonrpc: JsonRpcVersion2_0,
            id: wire2.clone(),
            result: ServerResult::empty(()),
        });
        ids.incoming(&mut answer);
        let JsonRpcMessage::Response(response) = &answer else {
            panic!("a response");
        };
        assert_eq!(response.id, RequestId::Number(1));
        let mut error: RxJsonRpcMessage<RoleClient> = JsonRpcMessage::Error(JsonRpcError {
            jsonrpc: JsonRpcVersion2_0,
            id: Some(wire1),
            error: ErrorData::internal_error("no", None),
        });
        ids.incoming(&mut error);
        let JsonRpcMessage::Error(error) = &error else {
            panic!("an error");
        };
        assert_eq!(error.id, Some(RequestId::Number(1)));
        assert!(ids.ids().wire.is_empty() && ids.ids().local.is_empty());

        // Other requests keep their ids.
        let mut list: TxJsonRpcMessage<RoleClient> = JsonRpcMessage::request(
            ClientRequest::ListToolsRequest(Default::default()),
            RequestId::Number(7),
        );
        ids.outgoing(&mut list);
        assert_eq!(wire_id(&list), RequestId::Number(7));
    }
}
