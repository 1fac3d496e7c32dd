/**
 * A small JSON Schema (2020-12 subset) validator for checking real control-API responses against
 * the OpenAPI 3.1 document the API serves. No validator package is installed, so this covers what
 * the document uses: type, properties, required, additionalProperties, propertyNames, enum, const,
 * pattern, min/maxLength, minimum/maximum, items, anyOf/oneOf/allOf and local `$ref`s.
 */

type Schema = Record<string, unknown> | boolean;

/** Validates `value` against `schema`; returns the problems found (empty: valid). */
export function validate(value: unknown, schema: Schema, root: Record<string, unknown>, at = '$'): string[] {
  if (schema === true) return [];
  if (schema === false) return [`${at}: no value allowed`];
  const s = schema;
  if (typeof s.$ref === 'string') return validate(value, resolve(s.$ref, root), root, at);
  const errors: string[] = [];
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
    if (!types.some((t) => isType(value, t)))
      return [`${at}: expected ${types.join('|')}, got ${JSON.stringify(value)}`];
  }
  if (s.const !== undefined && JSON.stringify(value) !== JSON.stringify(s.const)) {
    errors.push(`${at}: expected ${JSON.stringify(s.const)}`);
  }
  if (Array.isArray(s.enum) && !s.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    errors.push(`${at}: ${JSON.stringify(value)} not in ${JSON.stringify(s.enum)}`);
  }
  if (typeof value === 'string') {
    if (typeof s.pattern === 'string' && !new RegExp(s.pattern, 'u').test(value))
      errors.push(`${at}: does not match ${s.pattern}`);
    if (typeof s.minLength === 'number' && value.length < s.minLength)
      errors.push(`${at}: shorter than ${s.minLength}`);
    if (typeof s.maxLength === 'number' && value.length > s.maxLength) errors.push(`${at}: longer than ${s.maxLength}`);
  }
  if (typeof value === 'number') {
    if (typeof s.minimum === 'number' && value < s.minimum) errors.push(`${at}: below ${s.minimum}`);
    if (typeof s.maximum === 'number' && value > s.maximum) errors.push(`${at}: above ${s.maximum}`);
  }
  if (Array.isArray(value) && s.items !== undefined) {
    for (const [i, item] of value.entries()) errors.push(...validate(item, s.items as Schema, root, `${at}[${i}]`));
  }
  if (isType(value, 'object')) {
    const obj = value as Record<string, unknown>;
    const props = (s.properties ?? {}) as Record<string, Schema>;
    for (const key of (s.required ?? []) as string[]) if (!(key in obj)) errors.push(`${at}: missing ${key}`);
    for (const [key, v] of Object.entries(obj)) {
      if (s.propertyNames !== undefined)
        errors.push(...validate(key, s.propertyNames as Schema, root, `${at}{${key}}`));
      if (key in props) errors.push(...validate(v, props[key]!, root, `${at}.${key}`));
      else if (s.additionalProperties !== undefined) {
        errors.push(...validate(v, s.additionalProperties as Schema, root, `${at}.${key} (additional)`));
      }
    }
  }
  for (const sub of (s.allOf ?? []) as Schema[]) errors.push(...validate(value, sub, root, at));
  if (Array.isArray(s.anyOf) && !(s.anyOf as Schema[]).some((sub) => validate(value, sub, root, at).length === 0)) {
    errors.push(`${at}: matches none of anyOf`);
  }
  if (Array.isArray(s.oneOf)) {
    const matches = (s.oneOf as Schema[]).filter((sub) => validate(value, sub, root, at).length === 0).length;
    if (matches !== 1) errors.push(`${at}: matches ${matches} of oneOf (exactly 1 required)`);
  }
  return errors;
}

/**
 * Checks a response against the document: the path template and method must be documented, the
 * status must be one of the operation's responses, and the JSON body must match its schema.
 */
export function checkResponse(
  doc: Record<string, unknown>,
  method: string,
  template: string,
  status: number,
  body: unknown,
): string[] {
  const paths = doc.paths as Record<string, Record<string, { responses: Record<string, unknown> }>>;
  const operation = paths[template]?.[method.toLowerCase()];
  if (!operation) return [`${method} ${template} is not documented`];
  const response = operation.responses[String(status)] as
    | { content?: { 'application/json'?: { schema: Schema } } }
    | undefined;
  if (!response) return [`${method} ${template} answered ${status}, which is not documented`];
  const schema = response.content?.['application/json']?.schema;
  return schema === undefined ? [] : validate(body, schema, doc);
}

function resolve(ref: string, root: Record<string, unknown>): Schema {
  if (!ref.startsWith('#/')) throw new Error(`only local $refs are supported: ${ref}`);
  let node: unknown = root;
  for (const part of ref.slice(2).split('/'))
    node = (node as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  if (node === undefined) throw new Error(`unresolvable $ref ${ref}`);
  return node as Schema;
}

function isType(value: unknown, type: string): boolean {
  switch (type) {
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
    case 'array':
      return Array.isArray(value);
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'null':
      return value === null;
    default:
      return typeof value === type;
  }
}
