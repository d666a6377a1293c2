'use strict';
// A server-reflection client with no .proto of the service at hand: the
// ServerReflection messages are described here with protobufjs, the service's
// FileDescriptorProtos come from the server, and protobufjs' descriptor
// extension turns them into types to encode and decode with.

const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');
const descriptor = require('protobufjs/ext/descriptor');

// From grpc/reflection/v1/reflection.proto (v1alpha has the same messages).
const REFLECTION_PROTO = (pkg) => `
  syntax = "proto3";
  package ${pkg};
  message ServerReflectionRequest {
    string host = 1;
    oneof message_request {
      string file_by_filename = 3;
      string file_containing_symbol = 4;
      ExtensionRequest file_containing_extension = 5;
      string all_extension_numbers_of_type = 6;
      string list_services = 7;
    }
  }
  message ExtensionRequest { string containing_type = 1; int32 extension_number = 2; }
  message ServerReflectionResponse {
    string valid_host = 1;
    ServerReflectionRequest original_request = 2;
    oneof message_response {
      FileDescriptorResponse file_descriptor_response = 4;
      ExtensionNumberResponse all_extension_numbers_response = 5;
      ListServiceResponse list_services_response = 6;
      ErrorResponse error_response = 7;
    }
  }
  message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
  message ExtensionNumberResponse { string base_type_name = 1; repeated int32 extension_number = 2; }
  message ListServiceResponse { repeated ServiceResponse service = 1; }
  message ServiceResponse { string name = 1; }
  message ErrorResponse { int32 error_code = 1; string error_message = 2; }
`;

class ReflectionClient {
  /** version: 'v1' or 'v1alpha'. */
  constructor(target, version = 'v1') {
    const pkg = `grpc.reflection.${version}`;
    const root = protobuf.parse(REFLECTION_PROTO(pkg), { keepCase: true }).root;
    this.Req = root.lookupType(`${pkg}.ServerReflectionRequest`);
    this.Res = root.lookupType(`${pkg}.ServerReflectionResponse`);
    this.path = `/${pkg}.ServerReflection/ServerReflectionInfo`;
    this.client = new grpc.Client(target, grpc.credentials.createInsecure());
  }

  close() {
    this.client.close();
  }

  /** Sends one request on a fresh stream and resolves the one response. */
  ask(request, timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      const call = this.client.makeBidiStreamRequest(
        this.path,
        (m) => Buffer.from(this.Req.encode(this.Req.create(m)).finish()),
        (b) => this.Res.toObject(this.Res.decode(b), { oneofs: true, defaults: true }),
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
      );
      let answered = false;
      call.on('data', (res) => {
        answered = true;
        call.end();
        if (res.message_response === 'error_response') {
          reject(new Error(`reflection error ${res.error_response.error_code}: ${res.error_response.error_message}`));
        } else {
          resolve(res);
        }
      });
      call.on('error', (err) => {
        if (!answered) reject(err);
      });
      call.write(request);
    });
  }

  async listServices() {
    const res = await this.ask({ host: '', list_services: '' });
    return res.list_services_response.service.map((s) => s.name);
  }

  /**
   * The FileDescriptorProtos (decoded) of the file defining `symbol` and of
   * everything it imports, fetching by filename whatever the server did not
   * send along.
   */
  async filesFor(symbol) {
    const files = new Map();
    const add = (res) => {
      for (const bytes of res.file_descriptor_response.file_descriptor_proto) {
        const fd = descriptor.FileDescriptorProto.decode(bytes);
        if (!files.has(fd.name)) files.set(fd.name, fd);
      }
    };
    add(await this.ask({ host: '', file_containing_symbol: symbol }));
    for (let missing = this._missing(files); missing.length > 0; missing = this._missing(files)) {
      for (const name of missing) add(await this.ask({ host: '', file_by_filename: name }));
    }
    return [...files.values()];
  }

  _missing(files) {
    const out = [];
    for (const fd of files.values()) {
      for (const dep of fd.dependency || []) if (!files.has(dep)) out.push(dep);
    }
    return [...new Set(out)];
  }

  /** A protobufjs Root built from what the server described for `symbol`. */
  async rootFor(symbol) {
    const files = await this.filesFor(symbol);
    const set = descriptor.FileDescriptorSet.create({ file: files });
    return protobuf.Root.fromDescriptor(set);
  }

  /** Calls a unary method by its full name, e.g. "sessiond.v1.AdminService/GetStats". */
  async callUnary(fullMethod, request = {}, timeoutMs = 5000) {
    const [serviceName, methodName] = fullMethod.split('/');
    const root = await this.rootFor(serviceName);
    const service = root.lookupService(serviceName);
    const method = service.methods[methodName];
    if (!method) throw new Error(`no method ${methodName} in ${serviceName}`);
    method.resolve();
    const Req = method.resolvedRequestType;
    const Res = method.resolvedResponseType;
    const err = Req.verify(request);
    if (err) throw new Error(`bad request: ${err}`);
    const response = await new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        `/${serviceName}/${methodName}`,
        (m) => Buffer.from(Req.encode(Req.fromObject(m)).finish()),
        (b) => Res.decode(b),
        request,
        { deadline: Date.now() + timeoutMs },
        (e, r) => (e ? reject(e) : resolve(r)),
      );
    });
    return { message: response, type: Res, root };
  }
}

module.exports = { ReflectionClient };
