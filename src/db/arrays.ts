/**
 * Array parameters and results written and read as text: ids are digits and lease tokens are
 * uuids from the database, so neither needs quoting, and building the literal directly is
 * cheaper than pg's generic array encoder (this is on the path of every result flush).
 */
function arrayLiteral<T>(items: readonly T[], field: (item: T) => string): string {
  let text = '{';
  for (let i = 0; i < items.length; i++) text += (i === 0 ? '' : ',') + field(items[i]!);
  return `${text}}`;
}

/** A bigint[] literal of the items' ids. */
export const idArray = (items: ReadonlyArray<{ id: string }>): string => arrayLiteral(items, (c) => c.id);

/** A uuid[] literal of the items' lease tokens. */
export const tokenArray = (items: ReadonlyArray<{ token: string }>): string => arrayLiteral(items, (c) => c.token);

/** A bigint[] literal of ids. */
export const idList = (ids: readonly string[]): string => arrayLiteral(ids, (id) => id);

/** Ids from a bigint[] sent as text ("{1,2,3}"). */
export function parseIdArray(text: string | null | undefined): string[] {
  return text && text.length > 2 ? text.slice(1, -1).split(',') : [];
}
