import type { TaskHandler } from '../src/index.js';

/**
 * Sells a ticket for an event of limited capacity, exactly once per job, never oversold.
 *
 * Payload: { "eventId": 1, "buyer": "ada", "schema": "tickets" }  (schema optional)
 *
 * The purchase runs in ctx.transaction: the event row is locked first (every buyer of the
 * event takes that lock), the tickets are counted in a later statement (so the count sees
 * every sale committed before the lock was granted), and the sale, the purchase record and
 * the job's completion commit together. If this worker's lease was lost meanwhile (the job
 * was reaped and re-claimed), the completion matches no row and everything rolls back: the
 * other attempt decides. Each purchase ends as one row in purchases: sold or refused.
 *
 * Tables (create them once with ticketTablesSql, e.g. `psql -c "$(node -e ...)"`):
 */
export function ticketTablesSql(schema = 'tickets'): string {
  const s = checkSchema(schema);
  return `
    CREATE SCHEMA IF NOT EXISTS ${s};
    CREATE TABLE IF NOT EXISTS ${s}.events (id bigint PRIMARY KEY, capacity integer NOT NULL CHECK (capacity >= 0));
    CREATE TABLE IF NOT EXISTS ${s}.tickets (
      event_id bigint NOT NULL REFERENCES ${s}.events (id),
      buyer text NOT NULL,
      job_id bigint NOT NULL UNIQUE);
    CREATE TABLE IF NOT EXISTS ${s}.purchases (
      job_id bigint PRIMARY KEY,
      event_id bigint NOT NULL,
      buyer text NOT NULL,
      outcome text NOT NULL CHECK (outcome IN ('sold', 'refused')));`;
}

interface BuyTicketPayload {
  eventId: number;
  buyer: string;
  schema?: string;
}

function checkSchema(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,47}$/.test(schema)) throw new Error(`invalid tickets schema ${JSON.stringify(schema)}`);
  return schema;
}

const buyTicket: TaskHandler<BuyTicketPayload> = async (payload, ctx) => {
  const s = checkSchema(payload.schema ?? 'tickets');
  const outcome = await ctx.transaction(async (client) => {
    const event = await client.query<{ capacity: number }>(`SELECT capacity FROM ${s}.events WHERE id = $1 FOR UPDATE`, [
      payload.eventId,
    ]);
    const capacity = event.rows[0]?.capacity;
    if (capacity === undefined) throw new Error(`no event ${payload.eventId}`);
    const sold = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${s}.tickets WHERE event_id = $1`, [
      payload.eventId,
    ]);
    const result = (sold.rows[0]?.n ?? 0) < capacity ? 'sold' : 'refused';
    if (result === 'sold') {
      await client.query(`INSERT INTO ${s}.tickets (event_id, buyer, job_id) VALUES ($1, $2, $3)`, [payload.eventId, payload.buyer, ctx.job.id]);
    }
    await client.query(`INSERT INTO ${s}.purchases (job_id, event_id, buyer, outcome) VALUES ($1, $2, $3, $4)`, [
      ctx.job.id,
      payload.eventId,
      payload.buyer,
      result,
    ]);
    return result;
  });
  ctx.logger.info({ eventId: payload.eventId, outcome }, 'ticket purchase decided');
};

export default buyTicket;
