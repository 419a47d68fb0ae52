// An MCP server built on the official TypeScript SDK, for the tool-call benchmark: Streamable
// HTTP in stateless mode (a server and a transport per request, no session), protocol
// 2025-11-25, one `echo` tool. It listens on 127.0.0.1 at the port given as the only argument
// (0 picks a free one) and prints `listening PORT` once it accepts requests.
//
// scripts/bench.sh --node-upstream installs Node 22 and the SDK next to a copy of this file and
// passes its path to the harness.

import http from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

const MAX_BODY = 1024 * 1024;

function build() {
    const server = new McpServer({ name: 'bench-upstream', version: '1.0.0' });
    server.registerTool(
        'echo',
        { description: 'Echo a message', inputSchema: { message: z.string() } },
        async ({ message }) => ({ content: [{ type: 'text', text: message }] }),
    );
    return server;
}

async function readBody(req) {
    const chunks = [];
    let size = 0;
    for await (const chunk of req) {
        size += chunk.length;
        if (size > MAX_BODY) throw new Error('body too large');
        chunks.push(chunk);
    }
    return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
}

const httpServer = http.createServer(async (req, res) => {
    if (req.method !== 'POST') {
        res.writeHead(405, { allow: 'POST' }).end();
        return;
    }
    let body;
    try {
        body = await readBody(req);
    } catch {
        res.writeHead(400).end();
        return;
    }
    const server = build();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
        transport.close();
        server.close();
    });
    try {
        await server.connect(transport);
        await transport.handleRequest(req, res, body);
    } catch (error) {
        if (!res.headersSent) res.writeHead(500).end();
        console.error(error);
    }
});

httpServer.keepAliveTimeout = 60_000;
httpServer.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
    console.log(`listening ${httpServer.address().port}`);
});
