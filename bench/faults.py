import json, os, subprocess, threading, time, urllib.request, urllib.error, sys, socket
"""Fault figures for issue 8: 30 users cycling login, 5 heartbeats, logout against a
debug API and worker, with Redis killed (`redis`) or PostgreSQL stopped (`postgres`) for
20 s after 10 s of load, then 10 s more of load. Starts its own redis-server and, for
`postgres`, its own cluster (initdb as the postgres user) on free ports; prints JSON.

    cargo build -p presence-api -p presence-worker && python3 bench/faults.py redis
"""
mode = sys.argv[1]  # redis | postgres
HERE = os.path.dirname(os.path.abspath(__file__))
def free():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
rport, aport, wport = free(), free(), free()
db = f"presence_measure_{mode}"
subprocess.run(["psql","-h","127.0.0.1","-U","postgres","-c",f"DROP DATABASE IF EXISTS {db}"],capture_output=True)
def redis_start():
    return subprocess.Popen(["redis-server","--port",str(rport),"--bind","127.0.0.1","--save","","--appendonly","no"],stdout=subprocess.DEVNULL)
redis = redis_start(); time.sleep(0.3)
# PostgreSQL: for the postgres case, an own cluster
pgport = 5432
pgdata = None
if mode == "postgres":
    pgport = free(); pgdata=f"/tmp/presence-faults-pg{pgport}"; os.makedirs(pgdata); subprocess.run(["chown","postgres",pgdata])
    b=[d for d in (f"/usr/lib/postgresql/{v}/bin/" for v in os.listdir("/usr/lib/postgresql")) if os.path.exists(d+"initdb")][0]
    subprocess.run(["runuser","-u","postgres","--",b+"initdb","-D",pgdata,"-A","trust","-U","postgres","--no-sync"],capture_output=True)
    def pg(cmd): subprocess.run(["runuser","-u","postgres","--",b+"pg_ctl","-D",pgdata,"-o",f"-p {pgport} -k /tmp -c fsync=off","-l",pgdata+"/log","-w",cmd] if cmd=="start" else ["runuser","-u","postgres","--",b+"pg_ctl","-D",pgdata,"-m","fast","-w","stop"],capture_output=True)
    pg("start")
url = f"postgres://postgres@127.0.0.1:{pgport}/{db}?sslmode=disable"
env = dict(os.environ, DATABASE_URL=url, REDIS_URL=f"redis://127.0.0.1:{rport}", LISTEN_ADDR=f"127.0.0.1:{aport}",
           WORKER_HTTP_ADDR=f"127.0.0.1:{wport}", RUST_LOG="error", LAST_SEEN_FLUSH_MS="1000", PUBLISH_CATCH_UP_MS="1000",
           LOGIN_MAX_FAILURES_PER_ADDRESS="100000")
api = subprocess.Popen([os.path.join(HERE,"../target/debug/presence-api"),"serve"],env=env)
time.sleep(3)
worker = subprocess.Popen([os.path.join(HERE,"../target/debug/presence-worker"),"run"],env=env)
base=f"http://127.0.0.1:{aport}"
def call(method,path,body=None,token=None):
    req=urllib.request.Request(base+path,method=method,data=json.dumps(body).encode() if body is not None else None)
    req.add_header("content-type","application/json")
    if token: req.add_header("authorization","Bearer "+token)
    try:
        with urllib.request.urlopen(req,timeout=10) as r: return r.status, r.read()
    except urllib.error.HTTPError as e: return e.code, e.read()
    except Exception as e: return 0, str(e).encode()
N=30
for i in range(N): call("POST","/api/users/register/",{"username":f"user{i}","password":"password123"})
stats={"5xx":0,"5xx_after":0,"ok":0,"other":0}; lock=threading.Lock(); stop=False; back_at=[None]
def user(i):
    while not stop:
        st,b=call("POST","/api/users/login/",{"username":f"user{i}","password":"password123"})
        tok=json.loads(b)["token"] if st==200 else None
        for _ in range(5):
            if tok: s2,_=call("POST","/api/users/heartbeat/",token=tok); record(s2)
            time.sleep(0.2)
        if tok: s3,_=call("POST","/api/users/logout/",token=tok); record(s3)
        record(st)
def record(st):
    with lock:
        if st>=500:
            stats["5xx"]+=1
            if back_at[0] and time.time()>back_at[0]+2: stats["5xx_after"]+=1
        elif st in (200,204): stats["ok"]+=1
        else: stats["other"]+=1; stats[str(st)]=stats.get(str(st),0)+1
ts=[threading.Thread(target=user,args=(i,)) for i in range(N)]; [t.start() for t in ts]
time.sleep(10)
def q(sql):
    return subprocess.run(["psql","-h","127.0.0.1","-p",str(pgport),"-U","postgres","-d",db,"-tAc",sql],capture_output=True,text=True).stdout.strip()
before=q("SELECT max(id) FROM presence_events")
if mode=="redis": redis.kill(); redis.wait()
else: pg("stop")
t0=time.time(); time.sleep(20)
if mode=="redis": redis=redis_start()
else: pg("start")
back_at[0]=time.time()
during=q(f"SELECT count(*) FROM presence_events WHERE id > {before} AND recorded_at <= now()") 
time.sleep(10); stop=True; [t.join() for t in ts]
deadline=time.time()+30
while time.time()<deadline and q("SELECT count(*) FROM unpublished_events")!="0": time.sleep(0.5)
total=q("SELECT count(*) FROM presence_events"); pub=q("SELECT count(*) FROM presence_events WHERE revision <= (SELECT sent_through FROM event_publication)")
unp=q("SELECT count(*) FROM unpublished_events")
print(json.dumps({"mode":mode,"transitions_recorded_total":total,"published":pub,"unpublished_after_30s":unp,"recorded_between_outage_start_and_restart":during,**stats}))
api.terminate(); worker.terminate(); api.wait(); worker.wait(); redis.kill()
if mode=="postgres": pg("stop")
