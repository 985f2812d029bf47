import { describe, expect, it } from 'vitest';
import { COMMANDS } from './commands.js';
import { commandHelp, HELP, mainHelp } from './help.js';

describe('the help and the commands', () => {
  it('name the same commands, and every option a command takes appears in its help or the main help', () => {
    expect(Object.keys(HELP).sort()).toEqual(Object.keys(COMMANDS).sort());
    const main = mainHelp();
    for (const [name, spec] of Object.entries(COMMANDS)) {
      // bake says it takes the warm options.
      const text = commandHelp(name) + (name === 'bake' ? commandHelp('warm') : '');
      for (const option of Object.keys(spec.options)) {
        // Aliases kept for config-file names are documented with their short form.
        if (['purge-unused-after', 'check-unused-every'].includes(option)) continue;
        expect(`${text}\n${main}`, `${name} --${option}`).toContain(`--${option}`);
      }
    }
  });
});
