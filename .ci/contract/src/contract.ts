// The document as the server serves it, and a check of every answer against it: ajv
// validates each body against the schema documented for its path, method and status
// (errors included), and every call is counted so the flow can prove it reached every
// operation. Used by the tests as openapi-fetch middleware; this is not client code.
import { readFileSync } from "node:fs";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import type { Middleware } from "openapi-fetch";

export const API = process.env.API_URL ?? "http://127.0.0.1:8000";
export const DOCUMENT_PATH = process.env.OPENAPI_DOCUMENT ?? "generated/openapi.json";

interface MediaType {
  schema?: unknown;
}
interface DocumentedResponse {
  content?: Record<string, MediaType>;
}
interface Operation {
  responses: Record<string, DocumentedResponse>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown> };
}

const text = readFileSync(DOCUMENT_PATH, "utf8");
// One schema of every component, so `$ref`s resolve: `#/components/schemas/X` becomes
// `https://presence.invalid/schemas#/$defs/X`.
const doc: Document = JSON.parse(text.replaceAll("#/components/schemas/", "https://presence.invalid/schemas#/$defs/"));

const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats.default(ajv);
ajv.addFormat("int64", { type: "number", validate: Number.isSafeInteger });
ajv.addFormat("int32", { type: "number", validate: Number.isInteger });
ajv.addKeyword("example");
ajv.addSchema({ $id: "https://presence.invalid/schemas", $defs: doc.components.schemas });

const compiled = new Map<string, ValidateFunction>();

function validator(key: string, schema: unknown): ValidateFunction {
  let validate = compiled.get(key);
  if (!validate) {
    validate = ajv.compile({ $id: `https://presence.invalid/check/${compiled.size}`, ...{ allOf: [schema] } });
    compiled.set(key, validate);
  }
  return validate;
}

/** Every operation of the document, as `METHOD path`. */
export function operations(): string[] {
  return Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`));
}

/** The operations answered so far, with the statuses they answered. */
export const reached = new Map<string, Set<number>>();

/** Checks one answer: its status is documented, and its body is what the document says. */
export async function checkAnswer(method: string, path: string, response: Response): Promise<void> {
  const operation = doc.paths[path]?.[method.toLowerCase()];
  if (!operation) throw new Error(`${method} ${path} is not in the document`);
  const key = `${method.toUpperCase()} ${path}`;
  const statuses = reached.get(key) ?? new Set<number>();
  statuses.add(response.status);
  reached.set(key, statuses);
  const documented = operation.responses[String(response.status)];
  if (!documented) throw new Error(`${key} answered ${response.status}, which is not documented`);
  const type = response.headers.get("content-type") ?? "";
  const content = documented.content;
  if (!content) {
    const body = await response.clone().text();
    if (body !== "") throw new Error(`${key} ${response.status} is documented without a body, sent ${body}`);
    return;
  }
  const media = Object.keys(content).find((name) => type.startsWith(name));
  if (!media) throw new Error(`${key} ${response.status} sent ${type}, documented ${Object.keys(content).join(", ")}`);
  if (media !== "application/json") return; // text, and the event stream (checked event by event)
  const body: unknown = await response.clone().json();
  checkValue(`${key} ${response.status}`, content[media]?.schema, body);
}

/** Checks `value` against `schema` (a schema of the document, or a `$ref` to one). */
export function checkValue(what: string, schema: unknown, value: unknown): void {
  const validate = validator(what, schema);
  if (!validate(value)) {
    throw new Error(`${what}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value)}`);
  }
}

/** A component schema, by name, for `checkValue`. */
export function component(name: string): unknown {
  return { $ref: `https://presence.invalid/schemas#/$defs/${name}` };
}

/** openapi-fetch middleware: every answer is checked against the document. */
export const checked: Middleware = {
  async onResponse({ request, response, schemaPath }) {
    await checkAnswer(request.method, schemaPath, response);
    return undefined;
  },
};
