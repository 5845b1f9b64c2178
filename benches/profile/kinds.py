"""Sorts the samples of a `perf record` of redis-server (benches/profile/record.sh) into kinds: the
Lua VM, commands and their data structures, memory, kernel, network, script-call glue. Debian's
redis-server exports most of its functions; Lua's static ones are placed by their address range
(between lua_checkstack and luaopen_bit in that build: LUA_LO, LUA_HI; check `nm -D` for another).
Usage: python3 benches/profile/kinds.py /tmp/steps.perf [redis-server binary]"""
import subprocess, sys, re, bisect, collections
binary = sys.argv[2] if len(sys.argv) > 2 else '/usr/bin/redis-server'
nm = subprocess.run(['nm', '-D', '--defined-only', binary], capture_output=True, text=True).stdout
syms = sorted((int(p[0], 16), p[2]) for p in (l.split() for l in nm.splitlines()) if len(p) == 3)
addrs=[a for a,_ in syms]
LUA_LO, LUA_HI = 0x1525c0, 0x172000
def cat(sym, dso, ip):
    if 'kernel' in dso: return 'kernel (syscalls, network, scheduling)'
    s=sym
    if s.startswith('0x') or s=='[unknown]':
        try: a=int(ip,16)-(base or 0)
        except: return 'other'
        if 'jemalloc' in dso: return 'memory (copy, compare, allocate)'
        if 'redis' in dso:
            if LUA_LO<=a<LUA_HI: return 'Lua VM (interpreter, tables, strings, GC)'
            i=bisect.bisect_right(addrs,a)-1
            s=syms[i][1] if i>=0 else '?'
        else:
            return 'other'
    if re.match(r'^(lua_|luaL_|luaV|luaH|luaS|luaC|luaD|luaO|luaF|luaT|luaK|luaE|luaG|luaM|luaX|luaY|luaZ|luaU|luaA|luaB|lua_cjson|json_|strbuf|mp_|luaopen)', s): return 'Lua VM (interpreter, tables, strings, GC)'
    if 'printf' in s or 'strtod' in s or '____strtod' in s or 'fpconv' in s: return 'Lua VM (interpreter, tables, strings, GC)'
    if re.match(r'^(luaRedis|luaReply|luaPush|luaRaise|luaCallFunction|luaCreateArray|luaSetGlobalArray|luaArgs|scriptCall|scriptPrepare|scriptRes|evalGeneric|evalSha|luaRegister|luaProtected|luaCall|luaSetErrorMetatable|luaSetResp|luaMaskCountHook|luaGetFromRegistry|luaLdbLineHook|scriptInterrupt|scriptIsRunning|scriptIsTimedout|luaRedisGeneric|redisProtocolToLuaType|luaSaveOnRegistry|scriptVerify|scriptSetRepl|scriptKill|evalCalcFunctionName|scriptCurrentFunction|freeClientArgv|resetClient|moduleCallCommandFilters|lookupCommand|commandCheck|processCommand|call$|lookupCommandLogic|getNodeByQuery|scriptRunCtx)', s): return 'script call and redis.call glue'
    if re.match(r'^(addReply|_addReply|readQueryFromClient|processInputBuffer|processMultibulk|writeToClient|_writeToClient|handleClientsWithPending|connSocket|aeProcessEvents|aeMain|beforeSleep|afterSleep|clientHasPending|prepareClientToWrite|sdsMakeRoomFor|setDeferred|trimReplyUnused|read$|write$|__libc_read|__libc_write|epoll)', s): return 'network, parsing, replies'
    if re.match(r'^(__mem|mem|__GI_mem|malloc|free|realloc|je_|calloc|zmalloc|zfree|zrealloc|zcalloc|ztrymalloc|__GI___libc_malloc|_int_|malloc_usable_size|cfree|tcache)', s): return 'memory (copy, compare, allocate)'
    if 'libc' in dso and 'redis' not in dso: return 'memory (copy, compare, allocate)'
    return 'commands and data structures (hash, zset, list, dict, keys)'
out=subprocess.run(['perf','script','-i',sys.argv[1],'-F','ip,sym,symoff,dso'],capture_output=True,text=True).stdout
symaddr={n:a for a,n in syms}
base=None
for line in out.splitlines():
    m=re.match(r'\s*([0-9a-f]+) (\S+)\+0x([0-9a-f]+) \((.*)\)',line)
    if m and 'redis' in m.group(4) and m.group(2) in symaddr:
        base=int(m.group(1),16)-symaddr[m.group(2)]-int(m.group(3),16); break
print('base',hex(base) if base else None)
c=collections.Counter(); n=0
for line in out.splitlines():
    p=line.split()
    if len(p)<2: continue
    ip=p[0]; dso=p[-1]; sym=' '.join(p[1:-1]) or '[unknown]'
    if 'jemalloc' in dso: c['memory (copy, compare, allocate)']+=1; n+=1; continue
    sym=sym.split('+')[0]
    c[cat(sym,dso,ip)]+=1; n+=1
for k,v in c.most_common(): print(f"{100*v/n:5.1f}%  {k}")
print(n,'samples')
