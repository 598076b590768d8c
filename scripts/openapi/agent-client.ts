/**
 * A small client of jobstack's agent protocol, written against the types
 * openapi-typescript generates from the daemon's OpenAPI document
 * (`schema.d.ts`, made by scripts/openapi-check.sh). It is type-checked, not
 * run: it compiles only while the document describes the protocol it uses.
 */
import type { paths } from "./schema";

/** A type the document must define: one it lost becomes a string that breaks every use. */
type Known<T> = [T] extends [never] ? "missing from the OpenAPI document" : T;
/** The JSON content of a request body or a response. */
type Json<T> = T extends { content: { "application/json": infer B } } ? B : never;
/** The JSON request body of an operation. */
type RequestOf<O> = O extends { requestBody?: infer R } ? Json<NonNullable<R>> : never;
/** The JSON answer of an operation with status `S`. */
type AnswerOf<O, S extends PropertyKey> = O extends { responses: infer R }
  ? S extends keyof R
    ? Json<R[S]>
    : never
  : never;

type Register = paths["/api/v1/agent/register"]["post"];
type LeaseOp = paths["/api/v1/agent/lease"]["post"];
type HeartbeatOp = paths["/api/v1/agent/heartbeat"]["post"];
type ProgressOp = paths["/api/v1/agent/progress"]["post"];
type ResultOp = paths["/api/v1/agent/results"]["post"];

export type Registration = Known<RequestOf<Register>>;
export type Registered = Known<AnswerOf<Register, 200>>;
export type LeaseRequest = Known<RequestOf<LeaseOp>>;
export type Lease = Known<AnswerOf<LeaseOp, 200>>;
export type HeartbeatRequest = Known<RequestOf<HeartbeatOp>>;
export type HeartbeatAck = Known<AnswerOf<HeartbeatOp, 200>>;
export type ProgressReport = Known<RequestOf<ProgressOp>>;
export type Submission = Known<RequestOf<ResultOp>>;
export type ResultQuery = Known<NonNullable<ResultOp["parameters"]["query"]>>;
export type ResultAnswer = Known<AnswerOf<ResultOp, 200>>;
export type ErrorBody = Known<AnswerOf<ResultOp, "4XX">>;

/** A refusal of the daemon, with its stable code. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(`${status} ${body.error.code}: ${body.error.message}`);
  }
}

/** An agent talking to one daemon. */
export class AgentClient {
  private token = "";

  constructor(private readonly base: string) {}

  /** Register with the enrollment secret; later calls use the agent's token. */
  async register(secret: string, registration: Registration): Promise<Registered> {
    const registered: Registered = await this.call("/api/v1/agent/register", registration, secret);
    this.token = registered.token;
    return registered;
  }

  /** A part to run, or `null` when none came within `wait_ms`. */
  async lease(request: LeaseRequest): Promise<Lease | null> {
    const answer: Lease | undefined = await this.call("/api/v1/agent/lease", request);
    return answer ?? null;
  }

  /** Extend the leases in progress; stop working on the revoked ones. */
  async heartbeat(request: HeartbeatRequest): Promise<HeartbeatAck> {
    return this.call("/api/v1/agent/heartbeat", request);
  }

  /** Report progress of a leased part. */
  async progress(report: ProgressReport): Promise<void> {
    await this.call("/api/v1/agent/progress", report);
  }

  /** Send a result; with `lease_next`, the answer may carry the next lease. */
  async result(submission: Submission, query: ResultQuery): Promise<ResultAnswer> {
    const next = query.lease_next === true ? "?lease_next=true" : "";
    return this.call(`/api/v1/agent/results${next}`, submission);
  }

  private async call<T>(path: string, body: unknown, token = this.token): Promise<T> {
    const response = await fetch(`${this.base}${path}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (response.status >= 400) {
      throw new ApiError(response.status, (await response.json()) as ErrorBody);
    }
    if (response.status === 204) {
      return undefined as T;
    }
    return (await response.json()) as T;
  }
}

/** Run parts until none comes: each result asks for the next lease too. */
export async function work(
  client: AgentClient,
  run: (lease: Lease) => Promise<Submission["output"]>,
): Promise<number> {
  const registered = await client.register("enroll-secret", {
    name: "ts-agent",
    networks: ["10.0.0.0/8"],
    plugins: [],
    pooled_slots: 1,
    dedicated_slots: 0,
  });
  let done = 0;
  let lease = await client.lease({ wait_ms: registered.max_lease_wait_ms });
  while (lease !== null) {
    const held = lease;
    const ack = await client.heartbeat({ leases: [{ part_id: held.part_id, attempt: held.attempt }] });
    if (ack.revoked.some((r) => r.part_id === held.part_id)) {
      lease = await client.lease({ wait_ms: 0 });
      continue;
    }
    await client.progress({ part_id: held.part_id, attempt: held.attempt, done: 0, total: 1 });
    const started = new Date().toISOString();
    const output = await run(held);
    const answer = await client.result(
      {
        part_id: held.part_id,
        attempt: held.attempt,
        status: "finished",
        output,
        emitted: [],
        logs: [],
        started_at: started,
        duration_ms: 1,
      },
      { lease_next: true },
    );
    done += answer.ack === "applied" || answer.ack === "accepted_late" ? 1 : 0;
    lease = answer.lease ?? null;
  }
  return done;
}
