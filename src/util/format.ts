// Plain-text formatting shared by the CLI and the reports.

/** A Markdown table from rows of cells. */
export function markdownTable(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** [96,96,96,192] -> "96x3,192" */
export function compact(dims: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < dims.length;) {
    let j = i;
    while (j < dims.length && dims[j] === dims[i]) j++;
    out.push(j - i > 1 ? `${dims[i]}x${j - i}` : `${dims[i]}`);
    i = j;
  }
  return out.join(',');
}
