// QueueStates (src/worker/queues.ts) against a fake store: what a worker believes about its
// queues when reads of the settings and NOTIFYs of changes interleave.
import { describe, expect, it } from 'vitest';
import type { QueueSettings, QueueStore } from '../../src/db/queuestore.js';
import { QueueStates } from '../../src/worker/queues.js';

const settings = (name: string, paused: boolean, limits: Partial<QueueSettings> = {}): QueueSettings => ({
  name,
  paused,
  concurrencyLimit: null,
  rateLimit: null,
  ...limits,
});

/** A store whose settings() answers only when the test releases it, with the rows given then. */
function fakeStore(): { store: QueueStore; reads: Array<(rows: QueueSettings[]) => void> } {
  const reads: Array<(rows: QueueSettings[]) => void> = [];
  const store = {
    settings: () => new Promise<QueueSettings[]>((resolve) => reads.push(resolve)),
    nextRateCapacity: async () => null,
  } as unknown as QueueStore;
  return { store, reads };
}

describe('QueueStates', () => {
  it('knows only its own queues, and whether any has a limit', async () => {
    const { store, reads } = fakeStore();
    const states = new QueueStates(store, ['a', 'b']);
    const read = states.refresh();
    reads.shift()!([settings('a', true), settings('b', false, { rateLimit: { limit: 1, windowMs: 10 } }), settings('c', true)]);
    expect(await read).toEqual(['a']);
    expect(states.isPaused('a')).toBe(true);
    expect(states.isPaused('c')).toBe(false);
    expect(states.servesLimited).toBe(true);
    expect(states.servesRateLimited).toBe(true);
  });

  it('a pause announced by NOTIFY counts at once and survives a read that began before it', async () => {
    const { store, reads } = fakeStore();
    const states = new QueueStates(store, undefined);
    const stale = states.refresh(); // began before the pause committed
    expect(states.noteChange('paused:q')).toBe('q');
    expect(states.isPaused('q')).toBe(true);
    expect(states.noteChange('paused:q')).toBeUndefined(); // already paused here
    reads.shift()!([settings('q', false)]); // the stale read says active
    await stale;
    expect(states.isPaused('q')).toBe(true);
    // A resume counts once a read says so, or on top of a read that began before it.
    const before = states.refresh();
    expect(states.noteChange('active:q')).toBeUndefined();
    reads.shift()!([settings('q', true)]);
    await before;
    expect(states.isPaused('q')).toBe(false);
    // Junk on the channel changes nothing.
    expect(states.noteChange('nonsense')).toBeUndefined();
    expect(states.noteChange('paused:other')).toBe('other');
  });

  it('ignores announcements about queues it does not serve', () => {
    const { store } = fakeStore();
    const states = new QueueStates(store, ['mine']);
    expect(states.noteChange('paused:theirs')).toBeUndefined();
    expect(states.isPaused('theirs')).toBe(false);
  });
});
