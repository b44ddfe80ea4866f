// gRPC server reflection on the grpc-js server, both grpc.reflection.v1 and v1alpha (many tools
// still use the latter), so grpcurl and similar tools can list, describe and call the services
// with no .proto files at hand.
//
// The descriptors come from gen/descriptors.binpb, a FileDescriptorSet that scripts/descriptors.sh
// builds from proto/ WITH source info (the embedded descriptors of protoc-gen-es have none, and
// `describe` would show no comments). It also holds every imported file, google/rpc/status.proto
// and error_details.proto (so a client can decode the error details this service sends) and the
// health and reflection protos. The protocol itself is @grpc/reflection's (the gRPC authors'
// implementation for grpc-js); it takes proto-loader's package definition, of which it reads only
// the serialized FileDescriptorProtos, so it is handed those straight from the set.

import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import { createFileRegistry, fromBinary, toBinary, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorSet } from "@bufbuild/protobuf/wkt";
import { ReflectionService } from "@grpc/reflection";

/** The descriptor set, relative to the package root (committed; made by `npm run generate`). */
export const DESCRIPTORS_FILE = join("gen", "descriptors.binpb");

/** The reflection services this module adds. */
export const REFLECTION_SERVICES = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/** The package root holding gen/descriptors.binpb: two levels above src/rpc, three above dist/src/rpc. */
function descriptorsPath(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, DESCRIPTORS_FILE);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`${DESCRIPTORS_FILE} not found above ${__dirname}; run \`npm run generate\``);
}

let loaded: { set: FileDescriptorSet; registry: FileRegistry } | undefined;

function load(): { set: FileDescriptorSet; registry: FileRegistry } {
  if (!loaded) {
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(descriptorsPath()));
    loaded = { set, registry: createFileRegistry(set) };
  }
  return loaded;
}

/** Every file the server describes, with source info (comments). */
export function descriptorSet(): FileDescriptorSet {
  return load().set;
}

/** The same files as a registry of protobuf-es descriptors (for messages without generated code). */
export function descriptorRegistry(): FileRegistry {
  return load().registry;
}

/**
 * Adds grpc.reflection.v1 and v1alpha to `server`. `services` are the fully-qualified names of
 * the other services the server serves; ListServices answers them and the reflection services.
 * Throws when a name is not in the descriptor set (a stale gen/descriptors.binpb).
 */
export function addReflection(server: Pick<grpc.Server, "addService">, services: string[]): void {
  const { set, registry } = load();
  const listed = [...services, ...REFLECTION_SERVICES];
  for (const name of listed) {
    if (!registry.getService(name)) throw new Error(`service ${name} is not in ${DESCRIPTORS_FILE}; run \`npm run generate\``);
  }
  // What @grpc/reflection reads of a proto-loader package definition: the serialized files.
  const definition = {
    [DESCRIPTORS_FILE]: {
      format: "Protocol Buffer 3 FileDescriptorProto",
      type: {},
      fileDescriptorProtos: set.file.map((file) => Buffer.from(toBinary(FileDescriptorProtoSchema, file))),
    },
  } as unknown as ConstructorParameters<typeof ReflectionService>[0];
  new ReflectionService(definition, { services: listed }).addToServer(server);
}
