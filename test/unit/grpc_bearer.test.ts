/**
 * The bearer-token check (issue #15, item 5): the presented token is compared in constant time — both sides
 * hashed to SHA-256 first, so timingSafeEqual always sees two 32-byte digests, whatever length was sent —
 * and every malformed header is refused with its own reason. Behaviour only; timing is not measured here.
 */
import { createHash } from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { checkBearer } from "../../common/grpc_security.js";

/** Every comparison timingSafeEqual made: the byte lengths of its two arguments. */
const compared = vi.hoisted(() => [] as [number, number][]);

vi.mock("node:crypto", async (importOriginal) => {
  const crypto = await importOriginal<typeof import("node:crypto")>();
  return {
    ...crypto,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      compared.push([a.byteLength, b.byteLength]);
      return crypto.timingSafeEqual(a, b);
    },
  };
});

const TOKEN = "s3cret-token-0123456789abcdef";
const expected = createHash("sha256").update(TOKEN, "utf8").digest();

function headers(...values: string[]): Metadata {
  const md = new Metadata();
  for (const v of values) md.add("authorization", v);
  return md;
}

beforeEach(() => {
  compared.length = 0;
});

describe("checkBearer", () => {
  it("accepts the token, with any case of the scheme and surrounding whitespace", () => {
    for (const v of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `BEARER   ${TOKEN}`, `  Bearer ${TOKEN}  `]) {
      expect(checkBearer(headers(v), expected), v).toBeUndefined();
    }
  });

  it("refuses other tokens of any length, comparing two 32-byte digests each time", () => {
    const others = [
      `${TOKEN.slice(0, -1)}x`, // same length, last character differs
      TOKEN.slice(0, -1), // a prefix
      `${TOKEN}x`, // an extension
      "x",
      TOKEN.toUpperCase(),
      "x".repeat(1 << 20),
      `${TOKEN} ${TOKEN}`,
    ];
    for (const t of others)
      expect(checkBearer(headers(`Bearer ${t}`), expected), t.slice(0, 40)).toBe("wrong bearer token");
    expect(checkBearer(headers(`Bearer ${TOKEN}`), expected)).toBeUndefined();
    expect(compared).toEqual(Array.from({ length: others.length + 1 }, () => [32, 32]));
  });

  it("names what is wrong with a header that carries no comparable token, without comparing", () => {
    expect(checkBearer(new Metadata(), expected)).toBe(
      "missing authorization metadata (expected: Bearer <token>)",
    );
    expect(checkBearer(headers(`Bearer ${TOKEN}`, `Bearer ${TOKEN}`), expected)).toBe(
      "more than one authorization header",
    );
    for (const v of [`Basic ${TOKEN}`, TOKEN, "Bearer", "Bearer    ", `Bearer${TOKEN}`]) {
      expect(checkBearer(headers(v), expected), v).toBe("authorization metadata is not a Bearer token");
    }
    expect(compared).toEqual([]);
  });
});
