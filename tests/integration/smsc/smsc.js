#!/usr/bin/env node
// SMSC simulator for SmartRelay's integration tests (SMPP 3.4 server side).
//
//   node smsc.js --port P --control CP --system-id ID --password PW
//       [--receipt-delay-ms N] [--id-format hex|dec] [--receipt-id-format hex|dec]
//       [--record-file FILE] [--exit-on-stdin-close]
//
// Listens on 127.0.0.1:P for SMPP and on 127.0.0.1:CP for a small JSON/HTTP
// control API (see README.md beside this file). Prints "ready <port>" on
// stdout once both listen; every other message goes to stderr.
'use strict';

const http = require('http');
const fs = require('fs');
const smpp = require('smpp');

// Keep short_message / message_payload as raw Buffers: by default the
// package decodes them to text with its GSM/LATIN1/UCS2 tables (lossy).
smpp.filters.message.decode = function (value) { return value; };

function parseArgs(argv) {
  const o = {
    port: null, control: null, systemId: null, password: null,
    receiptDelayMs: 200, idFormat: 'hex', receiptIdFormat: null,
    recordFile: null, exitOnStdinClose: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage('missing value for ' + a);
      return argv[++i];
    };
    switch (a) {
      case '--port': o.port = parseInt(next(), 10); break;
      case '--control': o.control = parseInt(next(), 10); break;
      case '--system-id': o.systemId = next(); break;
      case '--password': o.password = next(); break;
      case '--receipt-delay-ms': o.receiptDelayMs = parseInt(next(), 10); break;
      case '--id-format': o.idFormat = next(); break;
      case '--receipt-id-format': o.receiptIdFormat = next(); break;
      case '--record-file': o.recordFile = next(); break;
      case '--exit-on-stdin-close': o.exitOnStdinClose = true; break;
      default: usage('unknown argument ' + a);
    }
  }
  if (!o.port || !o.control || o.systemId === null || o.password === null)
    usage('--port, --control, --system-id and --password are required');
  if (o.receiptIdFormat === null) o.receiptIdFormat = o.idFormat;
  for (const f of [o.idFormat, o.receiptIdFormat])
    if (f !== 'hex' && f !== 'dec') usage('id format must be hex or dec');
  if (!(o.receiptDelayMs >= 0)) usage('bad --receipt-delay-ms');
  return o;
}

function usage(msg) {
  process.stderr.write('smsc.js: ' + msg + '\n');
  process.exit(2);
}

const opt = parseArgs(process.argv.slice(2));
const log = (m) => process.stderr.write('smsc: ' + m + '\n');

// SMPP 3.4 message_state values, by receipt "stat:" word.
const STATES = {
  ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, DELETED: 4,
  UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8,
};
const BIND_TYPES = {
  bind_transceiver: 'transceiver',
  bind_transmitter: 'transmitter',
  bind_receiver: 'receiver',
};

function defaultMode() {
  return {
    throttle: false, fail_status: null, drop_responses: false,
    receipt_before_response: false, receipt_state: 'DELIVRD',
    receipt_states: {},            // destination prefix -> state
    max_per_second: null, receipt_id_format: opt.receiptIdFormat,
  };
}

let mode = defaultMode();
let submits = [];
let receipts = [];                 // one record per deliver_sm sent
let pending = [];                  // receipts waiting for a receiver session
let generation = 0;                // bumped by reset: stale receipts are dropped
let nextId = 0x1000;
let nextSession = 1;
let rate = { second: 0, count: 0 };
const live = new Set();            // every connected smpp.Session

function formatId(n, fmt) {
  return fmt === 'dec' ? n.toString(10) : n.toString(16).toUpperCase();
}

function smppDate(d) {
  const p = (n) => ('0' + n).slice(-2);
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) +
    p(d.getUTCDate()) + p(d.getUTCHours()) + p(d.getUTCMinutes());
}

function hex(b) {
  return Buffer.isBuffer(b) ? b.toString('hex') : null;
}

function stateFor(dest) {
  let best = null;
  for (const prefix of Object.keys(mode.receipt_states)) {
    if (dest.startsWith(prefix) && (best === null || prefix.length > best.length))
      best = prefix;
  }
  return best === null ? mode.receipt_state : mode.receipt_states[best];
}

function record(rec) {
  submits.push(rec);
  if (opt.recordFile) {
    try { fs.appendFileSync(opt.recordFile, JSON.stringify(rec) + '\n'); }
    catch (e) { log('record file: ' + e.message); }
  }
}

// ---- delivery receipts -------------------------------------------------

function receiverFor(systemId, preferred) {
  if (preferred && preferred.bound === 'transceiver' && live.has(preferred) &&
      preferred.socket.writable)
    return preferred;
  let best = null;
  for (const s of live) {
    if (s.systemId === systemId &&
        (s.bound === 'transceiver' || s.bound === 'receiver') && s.socket.writable &&
        (best === null || s.number < best.number))
      best = s;
  }
  return best;
}

function makeReceipt(sub, msgNum, session) {
  const state = stateFor(sub.destination_addr);
  const fmt = mode.receipt_id_format;
  const id = formatId(msgNum, fmt);
  const body = (sub._short.length ? sub._short : (sub._payload || Buffer.alloc(0)))
    .subarray(0, 20);
  let text = '';
  for (const c of body) text += (c >= 0x20 && c < 0x7f) ? String.fromCharCode(c) : '?';
  const ok = state === 'DELIVRD';
  const now = new Date();
  const sm = 'id:' + id + ' sub:001 dlvrd:' + (ok ? '001' : '000') +
    ' submit date:' + smppDate(new Date(sub.time * 1000)) +
    ' done date:' + smppDate(now) + ' stat:' + state +
    ' err:' + (ok ? '000' : '001') + ' text:' + text;
  return {
    generation, system_id: sub.system_id, session: session ? session.number : null,
    message_id: sub.message_id, receipted_message_id: id, state,
    message_state: STATES[state],
    pdu: {
      source_addr_ton: sub.dest_addr_ton, source_addr_npi: sub.dest_addr_npi,
      source_addr: sub.destination_addr,
      dest_addr_ton: sub.source_addr_ton, dest_addr_npi: sub.source_addr_npi,
      destination_addr: sub.source_addr,
      esm_class: 0x04, data_coding: 0,
      short_message: Buffer.from(sm, 'latin1'),
      receipted_message_id: id,
      message_state: STATES[state],
    },
    text: sm,
  };
}

function dispatch(r, preferred) {
  if (r.generation !== generation) return;
  const s = receiverFor(r.system_id, preferred);
  if (!s) { pending.push(r); return; }
  const rec = {
    time: Date.now() / 1000, session: s.number, message_id: r.message_id,
    receipted_message_id: r.receipted_message_id, state: r.state,
    text: r.text, resp_status: null,
  };
  receipts.push(rec);
  let answered = false;
  const onClose = () => {
    if (!answered && r.generation === generation) {
      rec.resp_status = 'closed';
      dispatch(r, null);      // not acknowledged: send again elsewhere / later
    }
  };
  s.socket.once('close', onClose);
  const sent = s.send(new smpp.PDU('deliver_sm', Object.assign({}, r.pdu)), (resp) => {
    answered = true;
    s.socket.removeListener('close', onClose);
    rec.resp_status = resp.command_status;
  });
  if (!sent) {
    answered = true;
    s.socket.removeListener('close', onClose);
    rec.resp_status = 'unsent';
    pending.push(r);
  }
}

function flushPending(systemId) {
  const waiting = pending;
  pending = [];
  for (const r of waiting) {
    if (r.system_id === systemId) dispatch(r, null); else pending.push(r);
  }
}

// ---- SMPP server ---------------------------------------------------------

function onSubmit(session, pdu) {
  const now = Date.now();  // one clock read: the record and the rate agree
  const msg = {
    time: now / 1000, system_id: session.systemId,
    session: session.number,
    source_addr: pdu.source_addr, source_addr_ton: pdu.source_addr_ton,
    source_addr_npi: pdu.source_addr_npi,
    destination_addr: pdu.destination_addr, dest_addr_ton: pdu.dest_addr_ton,
    dest_addr_npi: pdu.dest_addr_npi, esm_class: pdu.esm_class,
    data_coding: pdu.data_coding, registered_delivery: pdu.registered_delivery,
    short_message: hex(pdu.short_message) || '',
  };
  if (pdu.message_payload !== undefined) msg.message_payload = hex(pdu.message_payload);
  for (const k of ['sar_msg_ref_num', 'sar_total_segments', 'sar_segment_seqnum'])
    if (pdu[k] !== undefined) msg[k] = pdu[k];
  msg.message_id = null;
  msg.command_status = null;          // null: no response sent (drop_responses)

  let status = 0;
  if (!session.bound || session.bound === 'receiver') {
    status = smpp.ESME_RINVBNDSTS;
  } else if (mode.drop_responses) {
    record(msg);
    return;
  } else if (mode.fail_status !== null && mode.fail_status !== undefined) {
    status = mode.fail_status;
  } else if (mode.throttle) {
    status = smpp.ESME_RTHROTTLED;
  } else if (mode.max_per_second !== null && mode.max_per_second !== undefined) {
    const sec = Math.floor(now / 1000);
    if (rate.second !== sec) rate = { second: sec, count: 0 };
    if (rate.count >= mode.max_per_second) status = smpp.ESME_RTHROTTLED;
    else rate.count++;
  }
  msg.command_status = status;
  if (status !== 0) {
    record(msg);
    session.send(pdu.response({ command_status: status }));
    return;
  }
  const num = nextId++;
  msg.message_id = formatId(num, opt.idFormat);
  record(msg);
  const resp = pdu.response({ message_id: msg.message_id });
  if (!(pdu.registered_delivery & 1)) {
    session.send(resp);
    return;
  }
  const sub = Object.assign({}, msg, {
    _short: Buffer.isBuffer(pdu.short_message) ? pdu.short_message : Buffer.alloc(0),
    _payload: Buffer.isBuffer(pdu.message_payload) ? pdu.message_payload : null,
  });
  const r = makeReceipt(sub, num, session);
  if (mode.receipt_before_response) {
    dispatch(r, session);
    session.send(resp);
  } else {
    session.send(resp);
    const timer = setTimeout(() => { timers.delete(timer); dispatch(r, session); },
      opt.receiptDelayMs);
    timers.add(timer);
  }
}
const timers = new Set();

const server = smpp.createServer((session) => {
  session.number = nextSession++;
  session.systemId = null;
  session.bound = null;
  live.add(session);
  session.socket.setNoDelay(true);
  session.on('error', (e) => {
    log('session ' + session.number + ': ' + e.message);
    session.socket.destroy();
  });
  session.on('close', () => { live.delete(session); });

  for (const cmd of Object.keys(BIND_TYPES)) {
    session.on(cmd, (pdu) => {
      let status = 0;
      if (session.bound) status = smpp.ESME_RALYBND;
      else if (pdu.system_id !== opt.systemId) status = smpp.ESME_RINVSYSID;
      else if (pdu.password !== opt.password) status = smpp.ESME_RINVPASWD;
      if (status) {
        session.send(pdu.response({ command_status: status }));
        return;
      }
      session.systemId = pdu.system_id;
      session.bound = BIND_TYPES[cmd];
      session.boundAt = Date.now() / 1000;
      session.send(pdu.response({ system_id: 'smsc-sim' }));
      if (session.bound !== 'transmitter') flushPending(session.systemId);
    });
  }
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.bound = null;
    session.send(pdu.response(), () => session.close());
  });
  session.on('submit_sm', (pdu) => onSubmit(session, pdu));
  session.on('unknown', (pdu) => session.send(pdu.response()));   // generic_nack
  for (const cmd of ['query_sm', 'cancel_sm', 'replace_sm', 'data_sm', 'submit_multi'])
    session.on(cmd, (pdu) => session.send(pdu.response({ command_status: smpp.ESME_RINVCMDID })));
});
server.on('error', (e) => { log('smpp server: ' + e.message); process.exit(1); });

// ---- control API ---------------------------------------------------------

function sessionsView() {
  return [...live].filter((s) => s.bound).sort((a, b) => a.number - b.number)
    .map((s) => ({
      session: s.number, system_id: s.systemId, bind_type: s.bound,
      bound_at: s.boundAt, remote_port: s.socket.remotePort,
    }));
}

function applyMode(body) {
  const known = defaultMode();
  for (const k of Object.keys(body)) {
    if (!(k in known)) throw new Error('unknown mode key ' + k);
  }
  const m = Object.assign({}, mode, body);
  if (!(m.receipt_state in STATES)) throw new Error('bad receipt_state');
  if (m.receipt_states === null) m.receipt_states = {};
  for (const v of Object.values(m.receipt_states))
    if (!(v in STATES)) throw new Error('bad receipt state ' + v);
  if (m.receipt_id_format !== 'hex' && m.receipt_id_format !== 'dec')
    throw new Error('bad receipt_id_format');
  for (const k of ['fail_status', 'max_per_second'])
    if (m[k] !== null && !Number.isInteger(m[k])) throw new Error('bad ' + k);
  mode = m;
}

function closeSessions() {
  let n = 0;
  for (const s of live) {
    n++;
    if (typeof s.socket.resetAndDestroy === 'function') s.socket.resetAndDestroy();
    else s.socket.destroy();
  }
  return n;
}

const control = http.createServer((req, res) => {
  let data = '';
  req.setEncoding('utf8');
  req.on('data', (c) => { data += c; });
  req.on('end', () => {
    const reply = (code, obj) => {
      const body = JSON.stringify(obj);
      res.writeHead(code, { 'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    };
    const route = req.method + ' ' + req.url.split('?')[0];
    try {
      const body = data ? JSON.parse(data) : {};
      switch (route) {
        case 'GET /submits': return reply(200, submits);
        case 'GET /receipts': return reply(200, receipts);
        case 'GET /sessions': return reply(200, sessionsView());
        case 'GET /mode': return reply(200, mode);
        case 'POST /mode': applyMode(body); return reply(200, mode);
        case 'POST /reset':
          submits = []; receipts = []; pending = []; generation++;
          mode = defaultMode(); rate = { second: 0, count: 0 };
          return reply(200, { ok: true });
        case 'POST /close-sessions': return reply(200, { closed: closeSessions() });
        default: return reply(404, { error: 'no such endpoint: ' + route });
      }
    } catch (e) {
      return reply(400, { error: e.message });
    }
  });
});
control.on('error', (e) => { log('control server: ' + e.message); process.exit(1); });

// ---- start / stop -----------------------------------------------------------

let listening = 0;
function up() {
  if (++listening === 2) process.stdout.write('ready ' + opt.port + '\n');
}
server.listen(opt.port, '127.0.0.1', up);
control.listen(opt.control, '127.0.0.1', up);

let stopping = false;
function shutdown(why) {
  if (stopping) return;
  stopping = true;
  log('stopping (' + why + ')');
  for (const t of timers) clearTimeout(t);
  server.close();
  control.close();
  if (control.closeAllConnections) control.closeAllConnections();
  const finish = () => {
    for (const s of live) s.socket.destroy();
    process.exit(0);
  };
  const force = setTimeout(finish, 1000);
  const check = () => { if (live.size === 0) { clearTimeout(force); finish(); } };
  for (const s of [...live]) {
    s.socket.once('close', check);
    if (s.bound && s.socket.writable) {
      s.send(new smpp.PDU('unbind'), () => s.socket.destroy());
    } else {
      s.socket.destroy();
    }
  }
  check();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (opt.exitOnStdinClose) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}
