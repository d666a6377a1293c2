'use strict';
// Loads the .proto files shipped inside this package (proto/, a copy of the
// repository's proto/ kept identical by `npm run sync-protos` and a test).

const path = require('node:path');
const protoLoader = require('@grpc/proto-loader');

const PROTO_DIR = path.join(__dirname, '..', 'proto');

const common = {
  includeDirs: [PROTO_DIR],
  keepCase: false, // camelCase field names: sessionId, setFields, ...
  enums: String,
  defaults: true,
  oneofs: true,
};

// uint64 as decimal strings, so versions and fencing tokens survive the trip
// at full 64-bit precision; the client turns them into BigInt.
const session = protoLoader.loadSync(['sessiond/v1/session.proto'], { ...common, longs: String });

// Statistics are counters and gauges: plain numbers are what a dashboard
// wants, and none of them comes near 2^53.
const admin = protoLoader.loadSync(['sessiond/v1/admin.proto'], { ...common, longs: Number });

module.exports = {
  PROTO_DIR,
  sessionService: session['sessiond.v1.SessionService'],
  adminService: admin['sessiond.v1.AdminService'],
};
