/**
 * What the main thread and a coordinator thread say to each other (call_thread.ts, serve_calls.ts):
 * calls tagged with a sequence number and their replies, one-way notes, and errors as plain data.
 */

/**
 * Main thread → thread: a call expecting one Reply with the same seq, a one-way note, or the caller giving
 * up on call `cancel` (its Reply still comes, and is dropped).
 */
export type ToThread =
  | { readonly seq: number; readonly call: unknown }
  | { readonly note: unknown }
  | { readonly cancel: number };

/** Thread → main thread: the outcome of call `seq`; `error` as the thread's encodeError made it. */
export type Reply =
  | { readonly seq: number; readonly ok: true; readonly value: unknown }
  | { readonly seq: number; readonly ok: false; readonly error: unknown };

/** An Error as plain data, for errors that need no class of their own on the other side. */
export interface PlainError {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
}

export function encodePlainError(err: unknown): PlainError {
  const e = err instanceof Error ? err : new Error(String(err));
  return { name: e.name, message: e.message, stack: e.stack };
}

export function decodePlainError(data: unknown): Error {
  const e = data as PlainError;
  const err = new Error(e.message);
  err.name = e.name;
  if (e.stack) err.stack = e.stack;
  return err;
}
