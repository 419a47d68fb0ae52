// GraphiQL for Switchboard: renders the vendored GraphiQL with a fetcher of our own.
//
// - Queries and mutations: POST to the page's endpoint (/graphql) with the headers typed in
//   GraphiQL's headers editor.
// - Subscriptions: one WebSocket per subscription to /graphql/ws, speaking graphql-transport-ws
//   (connection_init carrying the editor's Authorization header, connection_ack, subscribe,
//   next/error/complete, ping/pong), closed when the subscription ends or is stopped.
// - History is kept in localStorage without the headers of each entry, and the headers editor
//   is never persisted, so an API token typed here lives only as long as the page.
//
// The page's Content-Security-Policy admits one inline style, by a nonce drawn per response
// and carried by this script's element: GraphiQL's dialogs add a <style> element to lock
// scrolling and give it `window.__webpack_nonce__` as nonce.

(function () {
  'use strict';

  const script = document.currentScript;
  window.__webpack_nonce__ = script.nonce;

  // The default content of the headers editor; a header left at a hint's value is not sent.
  const AUTHORIZATION_HINT = 'Bearer sbt_…';
  const DEFAULT_HEADERS = `{\n  "Authorization": "${AUTHORIZATION_HINT}"\n}`;
  const DEFAULT_QUERY = `# Switchboard's GraphQL API. Replace sbt_… in the
# Headers tab below with an API token, then run
# this query with Ctrl-Enter or the run button.

{
  viewer {
    id
    name
  }
}
`;

  // The server refuses queries nested deeper than its depth limit (12 by default), and
  // GraphiQL's introspection query follows type wrappers nine levels deep. The docs explorer
  // asks for four, one more than this schema's deepest type (a non-null list of non-null
  // values) needs, which keeps introspection at depth 10.
  const TYPE_REF = `fragment TypeRef on __Type {
  kind
  name
  ofType {
    kind
    name
    ofType {
      kind
      name
      ofType {
        kind
        name
        ofType {
          kind
          name
        }
      }
    }
  }
}
`;

  // How long the server may take to acknowledge a connection_init.
  const ACK_TIMEOUT_MS = 10_000;

  const endpoint = new URL(script.dataset.endpoint, window.location.href);
  const socketEndpoint = new URL(script.dataset.subscriptionEndpoint, window.location.href);
  socketEndpoint.protocol = socketEndpoint.protocol === 'https:' ? 'wss:' : 'ws:';

  // ---------------------------------------------------------------------------------------
  // Headers and failures.

  // A failure of the page itself (no answer, an unsendable header), shown in the result pane
  // as a GraphQL error.
  class Failure extends Error {}

  const failed = (message) => ({ errors: [{ message }] });

  // The headers to send: the editor's, without the ones still at their hint.
  function headersToSend(edited) {
    const headers = new Headers();
    if (!edited || typeof edited !== 'object') return headers;
    for (const [name, value] of Object.entries(edited)) {
      if (value === null || value === undefined) continue;
      const text = String(value);
      if (text === AUTHORIZATION_HINT) continue;
      try {
        headers.set(name, text);
      } catch (error) {
        throw new Failure(`The header "${name}" cannot be sent: ${error.message}`);
      }
    }
    return headers;
  }

  // ---------------------------------------------------------------------------------------
  // Queries and mutations.

  async function post(params, headers) {
    headers.set('Content-Type', 'application/json');
    headers.set('Accept', 'application/json');
    let response;
    let text;
    try {
      response = await fetch(endpoint, {
        method: 'POST',
        headers,
        body: JSON.stringify({
          query: params.query,
          variables: params.variables,
          operationName: params.operationName,
        }),
        credentials: 'omit',
        cache: 'no-store',
      });
      text = await response.text();
    } catch (error) {
      return failed(`No answer from ${endpoint.pathname}: ${error.message}`);
    }
    try {
      return JSON.parse(text);
    } catch {
      return failed(`The server answered ${response.status} without a GraphQL response.`);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Subscriptions over graphql-transport-ws.

  let lastSubscriptionId = 0;

  // Why the connection closed, in words; before its acknowledgement that is nearly always a
  // refused token.
  function closeReason(event, acknowledged) {
    const said = event.reason ? ` ${event.reason}` : '';
    const hint = acknowledged ? '' : ' Check the Authorization header in the Headers tab.';
    return `The subscription connection closed (${event.code}${said}).${hint}`;
  }

  // An Observable, as GraphiQL expects from a fetcher: subscribe(observer) -> { unsubscribe }.
  function subscription(params, headers) {
    return {
      subscribe(observer) {
        lastSubscriptionId += 1;
        const id = String(lastSubscriptionId);
        const socket = new WebSocket(socketEndpoint, 'graphql-transport-ws');
        // connecting -> subscribed -> done
        let phase = 'connecting';
        const ackTimer = setTimeout(() => {
          if (phase === 'connecting') {
            end(4504, 'Connection acknowledgement timeout',
              failed('The server did not acknowledge the subscription connection.'));
          }
        }, ACK_TIMEOUT_MS);

        const send = (message) => {
          if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
        };
        // Stop listening and close the socket, then tell the observer: `last` is a final
        // result to show, 'complete', or null once the observer has unsubscribed.
        function end(code, reason, last) {
          if (phase === 'done') return;
          phase = 'done';
          clearTimeout(ackTimer);
          if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN) {
            socket.close(code, reason);
          }
          if (last === null) return;
          if (last !== 'complete') observer.next(last);
          observer.complete();
        }

        socket.onopen = () => {
          const authorization = headers.get('Authorization');
          send({
            type: 'connection_init',
            payload: authorization === null ? {} : { Authorization: authorization },
          });
        };
        socket.onmessage = (event) => {
          if (phase === 'done') return;
          let message;
          try {
            message = JSON.parse(event.data);
          } catch {
            message = null;
          }
          const type = message && typeof message === 'object' ? message.type : undefined;
          switch (type) {
            case 'connection_ack':
              if (phase !== 'connecting') break;
              clearTimeout(ackTimer);
              phase = 'subscribed';
              send({
                id,
                type: 'subscribe',
                payload: {
                  query: params.query,
                  variables: params.variables,
                  operationName: params.operationName,
                },
              });
              break;
            case 'ping':
              send({ type: 'pong' });
              break;
            case 'pong':
              break;
            case 'next':
              if (message.id === id) observer.next(message.payload);
              break;
            case 'error':
              if (message.id === id) end(1000, 'Normal Closure', { errors: message.payload });
              break;
            case 'complete':
              if (message.id === id) end(1000, 'Normal Closure', 'complete');
              break;
            default:
              end(4400, 'Invalid message received',
                failed('The server sent a message outside graphql-transport-ws.'));
          }
        };
        socket.onclose = (event) => {
          end(event.code, event.reason, failed(closeReason(event, phase === 'subscribed')));
        };

        return {
          unsubscribe() {
            if (phase === 'subscribed') send({ id, type: 'complete' });
            end(1000, 'Normal Closure', null);
          },
        };
      },
    };
  }

  // ---------------------------------------------------------------------------------------
  // The fetcher GraphiQL calls for every operation, introspection included.

  // Decided from the query text itself: the document GraphiQL passes along can lag behind the
  // editor by a keystroke or a paste.
  function isSubscription(params) {
    const { parse, getOperationAST } = GraphiQL.GraphQL;
    let document;
    try {
      document = parse(params.query);
    } catch {
      return false; // the server reports the syntax error
    }
    const operation = getOperationAST(document, params.operationName || undefined);
    return Boolean(operation) && operation.operation === 'subscription';
  }

  function fetcher(params, options) {
    let headers;
    try {
      headers = headersToSend(options && options.headers);
    } catch (error) {
      if (error instanceof Failure) return Promise.resolve(failed(error.message));
      throw error;
    }
    if (params.operationName === 'IntrospectionQuery' && typeof params.query === 'string') {
      const at = params.query.indexOf('fragment TypeRef on __Type');
      if (at >= 0) params = { ...params, query: params.query.slice(0, at) + TYPE_REF };
    }
    if (isSubscription(params)) return subscription(params, headers);
    return post(params, headers);
  }

  // ---------------------------------------------------------------------------------------
  // Storage: GraphiQL's keys in localStorage, history entries without their headers.

  const PREFIX = 'graphiql:';
  const HISTORY_KEYS = new Set([`${PREFIX}queries`, `${PREFIX}favorites`]);

  function withoutHeaders(text) {
    const stored = JSON.parse(text);
    for (const entries of Object.values(stored)) {
      if (!Array.isArray(entries)) continue;
      for (const entry of entries) {
        if (entry && typeof entry === 'object') delete entry.headers;
      }
    }
    return JSON.stringify(stored);
  }

  const graphiqlKeys = () => Object.keys(window.localStorage).filter((key) => key.startsWith(PREFIX));
  const storage = {
    getItem: (key) => window.localStorage.getItem(key),
    setItem(key, value) {
      if (!HISTORY_KEYS.has(key)) {
        window.localStorage.setItem(key, value);
        return;
      }
      let kept;
      try {
        kept = withoutHeaders(value);
      } catch {
        return; // not GraphiQL's JSON: better lose the entry than keep a header
      }
      window.localStorage.setItem(key, kept);
    },
    removeItem: (key) => window.localStorage.removeItem(key),
    get length() {
      return graphiqlKeys().length;
    },
    clear() {
      for (const key of graphiqlKeys()) window.localStorage.removeItem(key);
    },
  };

  // ---------------------------------------------------------------------------------------
  // Start.

  const root = document.getElementById('graphiql');
  if (!window.React || !window.ReactDOM || !window.GraphiQL) {
    document.getElementById('status').textContent = 'GraphiQL could not start: its scripts did not load.';
    return;
  }
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher,
      storage,
      defaultQuery: DEFAULT_QUERY,
      defaultHeaders: DEFAULT_HEADERS,
      defaultEditorToolsVisibility: 'headers',
      shouldPersistHeaders: false,
    }),
  );
})();
